"""Latency regression tests: latlab's pytest plugin and ``latlab report``, one module per job.

``plugin`` (pytest hooks and options, the edge that turns problems into errors or warnings), ``session`` (the state
the plugin hands to every fixture), ``fixture`` (the ``latency`` fixture), ``target`` (what a model resolves to),
``anchor`` (the calibration workload), ``runs`` (the saved-run format), ``confidence`` (bootstrap intervals),
``gates`` (gate expressions and verdicts), ``compare`` (one measurement judged against another), ``report`` and
``cli`` (``latlab report``). Nothing is imported here: every pytest run loads the plugin, which must stay light.
"""
