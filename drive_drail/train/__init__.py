"""Training: demos, the adversarial loop (Algorithm 1), PPO, BC, checkpoints, metrics."""


# ``from drive_drail import train`` is the function :func:`drive_drail.api.train`, but importing this
# subpackage rebinds the name ``drive_drail.train`` to the package itself. So the package is callable
# too, and calls the same function, whichever of the two a user's import found.
import sys as _sys
import types as _types


class _CallablePackage(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        from drive_drail.api import train as _train

        return _train(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallablePackage
