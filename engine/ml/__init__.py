"""Model, data, training and evaluation, early stopping, and the checks of a config against this
machine: everything a Flower app's `task.py` holds in Flower's examples, and nothing of Flower."""
