"""Experiment trackers (TensorBoard, MLflow, W&B) that a run is mirrored to: `mirror` turns events
into what trackers record, for a live run (`live_mirror`) and a recorded one (`fedtui export --to`)
alike; one module per tracker library, each imported only when a run reports to it."""
