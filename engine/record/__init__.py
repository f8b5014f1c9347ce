"""A run folder: the single writer of its record, the fold that turns events into what views
show, checkpoints written atomically, and whether a run's controller is alive."""
