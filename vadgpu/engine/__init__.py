"""Training engine: config, checkpoints, the training loop, DDP."""
