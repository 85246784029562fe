"""KD-NAS: latency-aware search for the student to distill, reading latency from a latlab profile."""
