"""Training: patch sampling, augmentation, the data pipeline, the loop, checkpoints, DDP."""
