"""Training: the LightningModule, learning-rate schedules, callbacks, checkpointing and timing."""
