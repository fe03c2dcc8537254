"""Runs: training arguments, run directories, metric logs and plots."""
