"""Shared pieces of the native agents: the rollout over the vector env and the policy-gradient estimators."""
