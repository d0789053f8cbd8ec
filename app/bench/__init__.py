"""Benchmarks: the load runner (``runner.py``), its progress events (``events.py``) and the statistics and saved
runs (``results.py``). Used by the CLI, the TUI (through the client) and ``benchmarks/``."""
