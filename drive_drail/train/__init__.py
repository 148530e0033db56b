"""Training: demos, the adversarial loop (Algorithm 1), PPO, BC, checkpoints, metrics."""

from drive_drail.api import make_package_callable as _make_package_callable

_make_package_callable(__name__, "train")  # `drive_drail.train(...)` stays the function once this package is imported
