"""Closed-loop evaluation and reports.

- :func:`drive_drail.evaluate.runner.evaluate`: policies x scenarios x splits -> per-episode table;
- :func:`drive_drail.evaluate.runner.write_results` / :func:`~drive_drail.evaluate.runner.read_results`;
- :func:`drive_drail.evaluate.aggregate.aggregate`: means with 95% bootstrap CIs;
- :func:`drive_drail.evaluate.report.write_report`: the HTML report and its Markdown twin.
"""

from drive_drail.api import make_package_callable as _make_package_callable

_make_package_callable(__name__, "evaluate")  # `drive_drail.evaluate(...)` stays the function once this package is imported
