"""What the native agents share: the rollout, the training-loop helpers, the estimators and their gradients."""
