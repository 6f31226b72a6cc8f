"""Training: one loop for every family (loop.py), checkpoints, EMA, logging."""
