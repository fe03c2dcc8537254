"""The Gymnasium environments: the single next-word env and its native vector form."""
