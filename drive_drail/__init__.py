"""drive-drail: driving logs -> expert pairs -> DRAIL training -> closed-loop evaluation -> deploy.

Importing the package registers every scenario with gymnasium as ``drive-drail/<name>-v0``.
"""

__version__ = "0.1.0"


def _register() -> None:
    from drive_drail.sim import register_gym_envs

    register_gym_envs()


_register()
