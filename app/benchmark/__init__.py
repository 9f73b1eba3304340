"""Benchmarks people compare against, run through the live engine (docs/benchmark.md).

``ovo_data`` (OVO-Bench's annotation file, tasks and prompts), ``ovo_run`` (the two protocols, one
shared pass per video with engine snapshots), ``ovo_store`` (results in OVO-Bench's own layout,
written atomically, resumable), ``ovo_score`` (the official scoring rules, the paper's rows).
The command line is ``app/benchmark_cmd.py``.
"""
