"""latlab: per-device latency profiles of transformer encoder blocks, and predictions checked against reality."""

__version__ = "0.1.0"
