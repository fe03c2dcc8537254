"""The one language model and what works on it: sampling, devices, checkpoints, evaluation, n-gram peers."""
