"""drive-drail: driving logs -> expert pairs -> DRAIL training -> closed-loop evaluation -> deploy.

Importing the package registers every scenario with gymnasium as ``drive-drail/<name>-v0``.
The pipeline's steps are functions here too (``drive_drail.api``)::

    from drive_drail import convert, train, evaluate, export, load_policy
"""

__version__ = "0.1.0"

from drive_drail.api import convert, evaluate, export, load_policy, train  # noqa: E402  (light: imports on call)

__all__ = ["convert", "train", "evaluate", "export", "load_policy", "__version__"]


def _register() -> None:
    from drive_drail.sim import register_gym_envs

    register_gym_envs()


_register()
