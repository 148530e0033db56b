"""The evaluation report: tables with highlighted best values, plots, learning curves, GIFs."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage

from drive_drail.errors import UserError
from drive_drail.evaluate.metrics import METRIC_COLUMNS
from drive_drail.evaluate.report import ReportConfig, best_mask, pick_representatives, write_report
from drive_drail.evaluate.failures import failure_counts, failure_type, with_failure_types
from drive_drail.evaluate.runner import RESULT_COLUMNS, evaluate, write_results
from drive_drail.scenario import load_scenario


def constructed_results(seeds: int = 6) -> pd.DataFrame:
    """A results table with known outcomes: the expert always succeeds, 'trained' half the time, constant never."""
    rng = np.random.default_rng(0)
    rows = []
    for policy, kind, source, p_success in (("expert", "expert", "expert", 1.0), ("trained", "artifact", "/nonexistent/actor.pt", 0.5), ("constant", "constant", "constant:0,0", 0.0)):
        for scenario in ("stop", "lane_change"):
            for split in ("eval", "dense"):
                for i in range(seeds):
                    ok = i < p_success * seeds
                    row = {c: float(rng.uniform(0.5, 2.0)) for c in METRIC_COLUMNS}
                    row.update(
                        policy=policy, scenario=scenario, split=split, seed=1_000_000 + i, policy_kind=kind, policy_source=source, simulator="highway",
                        success=float(ok), collision=float(not ok), offroad=0.0, route_completion=1.0 if ok else 0.3 + 0.1 * i,
                        time_to_goal_s=10.0 + i if ok else np.nan, ade_m={"expert": np.nan, "artifact": 3.0 + i}.get(kind, 10.0 + i),
                    )
                    rows.append(row)
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


@pytest.fixture()
def results_dir(tmp_path):
    out = tmp_path / "results"
    write_results(constructed_results(), out, command="drive-drail evaluate --policy expert --scenario all")
    return out


def test_best_mask_follows_each_metrics_direction():
    assert best_mask([0.2, 0.9, 0.9], "success") == [False, True, True]
    assert best_mask([0.2, 0.9, np.nan], "collision") == [True, False, False]
    assert best_mask([20.0, 25.0], "mean_speed_mps") == [False, False]  # unranked
    assert best_mask([0.0, 0.0, 0.0], "success") == [False, False, False]  # all tie


def test_report_tables_highlight_the_best_and_the_markdown_twin_matches(tmp_path, results_dir):
    logs = tmp_path / "run"
    logs.mkdir()
    pd.DataFrame(
        {"global_step": [0, 256, 512, 768], "charts/episode_success": [0.0, 0.2, 0.4, 0.5], "disc/d_expert": [0.5, 0.6, 0.7, 0.7], "disc/d_agent": [0.5, 0.4, 0.3, 0.3], "losses/policy_loss": [0.1, 0.05, 0.02, 0.01]}
    ).to_csv(logs / "metrics.csv", index=False)
    path = write_report([results_dir], tmp_path / "report", training_logs=[logs], config=ReportConfig(render=False), command="drive-drail report results -o report")
    page = path.read_text()
    md = (tmp_path / "report" / "report.md").read_text()

    # summary: the expert's 100% success is the highlighted best of each scenario and split (Wilson: 6 of 6 -> [61%, 100%])
    assert page.count('<td class="best">100% [61%, 100%] (n=6)</td>') == 4
    assert md.count("**100% [61%, 100%] (n=6)**") == 4
    assert '<td class="best">50%' not in page.split("Scenario: stop")[0]
    # per-scenario tables: the trained policy's ADE (mean of 3..8) is the only one of a policy that
    # succeeds (the expert has none, the constant policy never succeeds), so nothing is singled out
    stop = page.split("Scenario: stop")[1].split("</table>")[0]
    trained_row = re.search(r"<tr><th>trained \(eval\)</th>(.*?)</tr>", stop).group(1)
    assert "<td>5.50 [" in trained_row
    # one bar figure per scenario plus the learning curves, inlined and written for the Markdown
    assert page.count("data:image/png;base64,") == 3
    for name in ("stop_metrics.png", "lane_change_metrics.png", "learning_curves.png"):
        assert f"(assets/{name})" in md
        assert PILImage.open(tmp_path / "report" / "assets" / name).size[0] > 300
    # reproducibility: commands, seeds and versions
    for text in ("drive-drail evaluate --policy expert --scenario all", "drive-drail report results -o report", "highway-env"):
        assert text in page and text in md
    # self-contained
    assert "<script" not in page and 'src="http' not in page and "href=\"http" not in page


def test_report_rejects_bad_inputs_with_one_line_errors(tmp_path, results_dir):
    bad_log = tmp_path / "metrics.csv"
    bad_log.write_text("step,x\n0,1\n")
    with pytest.raises(UserError, match=r"metrics.csv: column 'global_step' missing"):
        write_report([results_dir], tmp_path / "r", training_logs=[bad_log], config=ReportConfig(render=False))
    not_results = tmp_path / "other.csv"
    not_results.write_text("policy,scenario\na,b\n")
    with pytest.raises(UserError, match=r"other.csv: column 'split' missing"):
        write_report([not_results], tmp_path / "r", config=ReportConfig(render=False))
    with pytest.raises(UserError, match="no results table"):
        write_report([tmp_path / "nowhere"], tmp_path / "r")
    assert not (tmp_path / "r" / "report.html").exists()


def test_representatives_prefer_the_trained_policy_and_the_median_episode():
    table = constructed_results()
    reps = pick_representatives(table, "stop")
    assert reps["success"]["policy"] == "trained" and reps["failure"]["policy"] == "trained"
    assert reps["success"]["split"] == "eval"
    # trained successes have time to goal 10, 11, 12 -> median 11; failures completion .6 .7 .8 -> .7
    assert reps["success"]["time_to_goal_s"] == 11.0
    assert reps["failure"]["route_completion"] == pytest.approx(0.7)


def expert_and_constant_report(tmp_path, scenario: str, frame_every: int) -> str:
    """The report page of one held-out episode each of the expert (a success) and the constant policy (a failure)."""
    table = evaluate(["expert", "constant"], [load_scenario(scenario)], episodes=1, split="eval", workers=1, reference=False)
    write_results(table, tmp_path / "results")
    page = write_report([tmp_path / "results"], tmp_path / "report", config=ReportConfig(frame_every=frame_every)).read_text()
    assert page.count("data:image/gif;base64,") == 2 and "not rendered" not in page
    assert "replay differs" not in page
    return page


def test_report_replays_a_success_and_a_failure_as_gifs(tmp_path):
    page = expert_and_constant_report(tmp_path, "stop", frame_every=3)
    for outcome in ("success", "failure"):
        gif = PILImage.open(tmp_path / "report" / "assets" / f"stop_{outcome}.gif")
        assert gif.format == "GIF" and gif.n_frames > 5
        frame = np.asarray(gif.convert("RGB"))
        assert frame.std() > 5  # a drawn road, not a blank frame
    assert "success: expert on stop/eval" in page and "failure: constant on stop/eval" in page
    frame = np.asarray(PILImage.open(tmp_path / "report" / "assets" / "stop_success.gif").convert("RGB")).astype(int)
    corner = frame[2:14, 2:200].reshape(-1, 3)
    assert (corner.max(axis=1) < 20).any() and (corner.min(axis=1) > 235).any()  # the time/speed/action overlay
    ego_green = (np.abs(frame.reshape(-1, 3) - (50, 200, 0)).sum(axis=1) < 30).any()
    assert ego_green  # highway-env's ego colour, not the stalled obstacle's yellow


def test_the_report_says_why_episodes_fail_with_a_gallery_and_traces_beside_the_expert(tmp_path):
    page = expert_and_constant_report(tmp_path, "stop", frame_every=3)
    assert "Why episodes fail: stop" in page and "Why episodes fail" in page
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| constant | eval | 1 | 0 (0%) | 1 (100%) | 0 (0%) | 0 (0%) | 0 (0%) |" in md  # the constant car hits the stalled one
    assert "| expert | eval | 1 | 1 (100%) |" in md
    assert "failed episodes (1)" in md and "| constant | eval |" in md
    end = PILImage.open(tmp_path / "report" / "assets" / "stop_constant_collision_end.png")
    trace = PILImage.open(tmp_path / "report" / "assets" / "stop_constant_collision_trace.png")
    assert end.format == trace.format == "PNG" and np.asarray(end.convert("RGB")).std() > 5 and trace.width > 3 * trace.height
    assert "(green: the expert from the same seed)" in page


def test_failure_types_follow_their_rule_in_order():
    base = dict(success=0.0, collision=0.0, offroad=0.0, min_speed_mps=10.0, time_to_goal_s=float("nan"))
    assert failure_type({**base, "success": 1.0, "collision": 1.0}) == "success"
    assert failure_type({**base, "collision": 1.0, "offroad": 1.0}) == "collision"
    assert failure_type({**base, "offroad": 1.0, "min_speed_mps": 0.0}) == "off-road"
    assert failure_type({**base, "min_speed_mps": 0.2}) == "stopped short"
    assert failure_type({**base, "min_speed_mps": 0.2, "time_to_goal_s": 12.0}) == "timeout"  # reached the goal, then failed
    assert failure_type(base) == "timeout"
    counts = failure_counts(with_failure_types(constructed_results()), ["expert", "trained", "constant"])
    assert counts["episodes"].tolist() == [24, 24, 24] and counts["success"].tolist() == [24, 12, 0]
    assert (counts["collision"] + counts["success"]).tolist() == [24, 24, 24]  # the constructed failures all collide


@pytest.mark.slow
def test_metadrive_episodes_are_replayed_as_top_down_gifs_without_assets(tmp_path):
    from drive_drail.sim import topdown

    expert_and_constant_report(tmp_path, "metadrive_stop", frame_every=5)
    for outcome in ("success", "failure"):
        gif = PILImage.open(tmp_path / "report" / "assets" / f"metadrive_stop_{outcome}.gif")
        # The expert drives up to the stalled car; the constant policy stands still in an empty view, and
        # the GIF encoder merges identical frames into one.
        if outcome == "success":
            assert gif.n_frames > 5
        gif.seek(gif.n_frames // 2)
        frame = np.asarray(gif.convert("RGB")).reshape(-1, 3).astype(int)
        for colour in (topdown.EGO, topdown.STALLED, topdown.ROAD):  # the ego, the stalled car ahead, the road
            assert (np.abs(frame - colour).sum(axis=1) < 30).any(), colour


def test_hostile_names_stay_inside_the_report_and_are_escaped_in_both_pages(tmp_path):
    table = constructed_results(seeds=2)
    table.loc[table.scenario == "stop", "scenario"] = "../../escape"
    table.loc[table.policy == "trained", "policy"] = "<img src=x onerror=alert(1)>"
    out = tmp_path / "results"
    write_results(table, out, command="drive-drail evaluate")
    report = tmp_path / "deep" / "report"
    path = write_report([out], report, config=ReportConfig(render=False), command="drive-drail report")
    written = {p.resolve() for p in tmp_path.rglob("*") if p.is_file()} - {p.resolve() for p in out.rglob("*")}
    assert written and all(report.resolve() in p.parents for p in written)  # nothing outside the report folder
    assert not any(p.name.startswith(".") for p in (report / "assets").iterdir())
    for page in (path.read_text(), (report / "report.md").read_text()):
        assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_report_shows_its_progress_on_a_terminal_and_is_quiet_when_asked(tmp_path, results_dir):
    import sys

    from terminal import stderr_on_a_terminal

    base = [sys.executable, "-m", "drive_drail.cli", "report", str(results_dir)]
    rc, text = stderr_on_a_terminal(base + ["-o", str(tmp_path / "r1")])
    assert rc == 0 and "report" in text and "2/2" in text and "scenario" in text  # stop and lane_change
    rc, text = stderr_on_a_terminal(base + ["-o", str(tmp_path / "r2"), "--quiet"])
    assert rc == 0 and "2/2" not in text
    assert (tmp_path / "r2" / "report.html").is_file()


def test_learning_curves_take_labels_tell_two_runs_called_train_apart_and_have_a_wall_clock_axis(tmp_path):
    from drive_drail.evaluate.report import TIME_COLUMNS, curve_x, distinct_names, read_training_log

    rows = pd.DataFrame({"global_step": [1000, 2000, 3000], "charts/episode_success": [0.1, 0.5, 0.9],
                         **{c: [1.0, 2.0, 3.0] for c in TIME_COLUMNS}})
    for run in ("a/train", "b/train"):
        (tmp_path / run).mkdir(parents=True)
        rows.to_csv(tmp_path / run / "metrics.csv", index=False)
    sources = [str(tmp_path / "a" / "train"), str(tmp_path / "b" / "train"), f"drail={tmp_path / 'a' / 'train'}"]
    logs = distinct_names([read_training_log(s) for s in sources], sources)
    assert [name for name, _ in logs] == ["train (a)", "train (b)", "drail"]
    assert curve_x(rows, "wall").tolist() == [3.0, 9.0, 18.0]  # the running sum of the iteration times
    assert curve_x(rows, "step").tolist() == [1000, 2000, 3000]
    assert curve_x(rows.drop(columns=list(TIME_COLUMNS)), "wall").isna().all()
    with pytest.raises(UserError, match="no metrics.csv"):
        read_training_log(f"x={tmp_path / 'nowhere'}")


def test_a_policy_that_never_succeeds_is_not_highlighted_for_its_other_metrics():
    from drive_drail.evaluate.aggregate import aggregate
    from drive_drail.evaluate.report import scenario_table

    table = constructed_results()
    table.loc[table["policy"] == "constant", "hard_brakes"] = 0.0  # it crashes before it could brake
    t = scenario_table(aggregate(table), "stop", ["expert", "trained", "constant"], ["success", "hard_brakes"])
    col = t.header.index("hard brakes") if "hard brakes" in t.header else 2
    rows = {r[0]: b for r, b in zip(t.rows, t.best)}
    assert not rows["constant (eval)"][col]
    assert rows["expert (eval)"][col] or rows["trained (eval)"][col]
    assert rows["expert (eval)"][1] and not rows["constant (eval)"][1]  # success still ranks everyone


def test_paired_differences_to_the_expert_use_the_same_seeds(tmp_path, results_dir):
    from drive_drail.evaluate.aggregate import paired_differences

    table = constructed_results()
    paired = paired_differences(table, "expert").set_index(["policy", "scenario", "split", "metric"])
    trained = paired.loc[("trained", "stop", "eval", "success")]
    assert trained["n"] == 6 and trained["mean"] == pytest.approx(-0.5)
    assert -1.0 <= trained["ci_low"] < -0.5 < trained["ci_high"] <= 0.0
    constant = paired.loc[("constant", "stop", "eval", "success")]
    assert constant["mean"] == constant["ci_low"] == constant["ci_high"] == -1.0  # fails every seed the expert passes
    # a seed the expert did not play is not paired
    fewer = table[~((table["policy"] == "expert") & (table["seed"] == 1_000_000))]
    assert paired_differences(fewer, "expert").set_index(["policy", "scenario", "split", "metric"]).loc[("trained", "stop", "eval", "success"), "n"] == 5
    assert paired_differences(table[table["policy"] != "expert"], "expert").empty
    page = write_report([results_dir], tmp_path / "r", config=ReportConfig(render=False)).read_text()
    assert "Paired with the expert on the same seeds" in page and "-50.0 pp" in page


def seeded_results(success_per_run: dict[str, list[float]], episodes: int = 10) -> pd.DataFrame:
    """Runs with known success rates on two tasks: ``{label: [rate on stop, rate on lane_change]}``."""
    rows = []
    for label, rates in success_per_run.items():
        for scenario, rate in zip(("stop", "lane_change"), rates):
            for i in range(episodes):
                row = {c: 1.0 for c in METRIC_COLUMNS}
                row.update(policy=label, scenario=scenario, split="eval", seed=1_000_000 + i, policy_kind="artifact",
                           policy_source=f"/runs/{label}/actor.pt", simulator="highway", success=float(i < rate * episodes))
                rows.append(row)
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def test_training_seeds_of_a_learner_are_grouped_by_their_labels():
    from drive_drail.evaluate.aggregate import training_seed_groups

    labels = ["expert", "drail-s0", "drail-s1", "gail_s0", "gail_seed1", "runs/lane_change-bc-s2", "bc@s7", "lonely-s3", "s4"]
    assert training_seed_groups(labels) == {"drail": ["drail-s0", "drail-s1"], "gail": ["gail_s0", "gail_seed1"]}


def test_across_seed_aggregates_follow_rliables_definitions():
    import scipy.stats

    from drive_drail.evaluate.aggregate import across_seeds, improvement_probabilities, iqm, probability_of_improvement, score_matrices

    runs = {"drail-s0": [1.0, 0.9], "drail-s1": [0.9, 0.3], "drail-s2": [1.0, 0.8], "gail-s0": [0.5, 0.5], "gail-s1": [0.5, 0.5],
            "gail-s2": [0.5, 0.5], "expert": [1.0, 1.0]}
    table = seeded_results(runs)
    matrices, tasks = score_matrices(table)
    agg = across_seeds(matrices, tasks).set_index(["learner", "scenario", "split", "statistic"])
    assert set(agg.index.get_level_values("learner")) == {"drail", "gail"}  # the expert is one policy, not a learner
    drail = np.array([runs[f"drail-s{i}"] for i in range(3)])
    assert agg.loc[("drail", "lane_change", "eval", "mean"), "value"] == pytest.approx(drail[:, 1].mean())
    assert agg.loc[("drail", "all", "all", "mean"), "value"] == pytest.approx(drail.mean())
    assert agg.loc[("drail", "all", "all", "iqm"), "value"] == pytest.approx(scipy.stats.trim_mean(drail.ravel(), 0.25))
    lc = agg.loc[("drail", "lane_change", "eval", "mean")]
    assert lc["ci_low"] < lc["value"] < lc["ci_high"] and lc["ci_low"] >= 0.3 and lc["ci_high"] <= 0.9  # runs' spread, in their range
    same = agg.loc[("gail", "all", "all", "mean")]
    assert same["ci_low"] == same["value"] == same["ci_high"] == 0.5  # identical runs: no seed-to-seed spread
    assert iqm(np.array([0.0, 0.1, 0.2, 100.0])) == pytest.approx(0.15)  # one outlying run does not move it
    assert probability_of_improvement(drail, np.full((3, 2), 0.5)) == pytest.approx(0.5 * (1.0 + 2 / 3))  # stop: 3 of 3 runs beat 0.5; lane_change: 2 of 3
    assert probability_of_improvement(drail, drail) == pytest.approx(0.5)
    poi = improvement_probabilities(matrices).set_index(["learner", "other"])
    assert poi.loc[("drail", "gail"), "value"] == pytest.approx(1.0 - poi.loc[("gail", "drail"), "value"])
    assert poi.loc[("drail", "gail"), "ci_low"] <= poi.loc[("drail", "gail"), "value"] <= poi.loc[("drail", "gail"), "ci_high"]


def test_the_report_aggregates_training_seeds_only_where_a_learner_has_several(tmp_path):
    seeded = tmp_path / "seeded"
    write_results(seeded_results({"drail-s0": [1.0, 0.8], "drail-s1": [0.9, 0.5], "gail-s0": [0.5, 0.5], "gail-s1": [0.6, 0.4]}),
                  seeded, command="drive-drail evaluate")
    page = write_report([seeded], tmp_path / "r", config=ReportConfig(render=False)).read_text()
    assert "Across training seeds" in page and "drail (2 runs)" in page and "P(row learner" in page
    assert "80% [" in page  # drail's mean over its runs and both tasks: (1.0 + 0.8 + 0.9 + 0.5) / 4
    single = tmp_path / "single"
    write_results(seeded_results({"drail-s0": [1.0, 0.9], "gail": [0.5, 0.5]}), single, command="drive-drail evaluate")
    assert "Across training seeds" not in write_report([single], tmp_path / "r2", config=ReportConfig(render=False)).read_text()
