"""The HTML report opens cleanly in a real browser (Debian's headless Chromium).

Needs the ``chromium`` package (``apt-get install -y chromium``; ``make test`` installs it where apt
works); where no Chromium can be found this test skips and names the install command.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from browser import BrowserError, check_page, find_chromium
from drive_drail.evaluate.report import ReportConfig, write_report
from drive_drail.evaluate.runner import evaluate, write_results
from drive_drail.scenario import load_scenario


def test_report_loads_in_headless_chromium_with_images_tables_and_no_console_errors(tmp_path):
    try:
        chromium = find_chromium()
    except BrowserError as exc:  # a missing system package, not a failure of the report
        pytest.skip(str(exc))

    stop = load_scenario("stop")
    table = evaluate(["expert", "constant"], [stop], episodes=2, split="eval", workers=1)
    write_results(table, tmp_path / "results")
    logs = tmp_path / "run"
    logs.mkdir()
    (logs / "metrics.csv").write_text("global_step,charts/episode_success,disc/d_expert,disc/d_agent\n0,0,0.5,0.5\n512,0.5,0.7,0.3\n")
    html_path = write_report([tmp_path / "results"], tmp_path / "report", training_logs=[logs], config=ReportConfig(frame_every=3))
    page = html_path.read_text()

    seen = check_page(html_path, chromium=chromium)

    assert seen.console_errors == []
    assert seen.title == "drive-drail evaluation report"
    # every <img> of the file (bar plots, learning curves, success and failure GIFs, the failure gallery's
    # last frame and traces) decoded
    assert len(seen.images) == page.count("<img ") == 6
    assert seen.broken_images == []
    assert sorted(im["src"][:15] for im in seen.images) == ["data:image/gif;"] * 2 + ["data:image/png;"] * 4
    # the summary table, the paired table (constant minus the expert), the per-scenario table, how the episodes
    # ended (one row per policy) and the failed episodes (the constant policy's two), with their rows
    assert seen.tables == page.count("<table>") == 5
    assert seen.table_rows == 2 + 1 + 2 + 2 + 2
    shot = np.asarray(Image.open(io.BytesIO(seen.screenshot_png)).convert("RGB"))
    assert shot.shape[0] > 500 and shot.shape[1] > 800
    assert shot.std() > 10  # text, tables and figures drawn, not a blank page


def test_the_page_check_sees_broken_images_and_console_errors(tmp_path):
    """The checker itself: a page with a missing image, a console error and an exception fails it."""
    try:
        chromium = find_chromium()
    except BrowserError as exc:  # a missing system package, not a failure of the report
        pytest.skip(str(exc))
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>bad</title></head><body>'
        '<img src="missing.png"><table><tbody><tr><td>1</td></tr></tbody></table>'
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    seen = check_page(bad, chromium=chromium)
    assert len(seen.broken_images) == 1
    assert any("boom" in e for e in seen.console_errors)
    assert any("undefinedFunction" in e for e in seen.console_errors)
    assert any("missing.png" in e for e in seen.console_errors)
    assert seen.tables == 1 and seen.table_rows == 1
