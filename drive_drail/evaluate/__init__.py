"""Closed-loop evaluation and reports.

- :func:`drive_drail.evaluate.runner.evaluate`: policies x scenarios x splits -> per-episode table;
- :func:`drive_drail.evaluate.runner.write_results` / :func:`~drive_drail.evaluate.runner.read_results`;
- :func:`drive_drail.evaluate.aggregate.aggregate`: means with 95% bootstrap CIs;
- :func:`drive_drail.evaluate.report.write_report`: the HTML report and its Markdown twin.
"""


# ``from drive_drail import evaluate`` is the function :func:`drive_drail.api.evaluate`, but importing this
# subpackage rebinds the name ``drive_drail.evaluate`` to the package itself. So the package is callable
# too, and calls the same function, whichever of the two a user's import found.
import sys as _sys
import types as _types


class _CallablePackage(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        from drive_drail.api import evaluate as _evaluate

        return _evaluate(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallablePackage
