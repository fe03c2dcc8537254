"""Runs: training arguments (``args``), the run directory each run writes (``run_dir``), plots."""
