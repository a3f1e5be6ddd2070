"""The benchmark harness end to end on the tiny scale, and its data generator (no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import probe  # noqa: E402
import run as bench_run  # noqa: E402
import synthetic  # noqa: E402
from crane.data.mmrec_format import write_mmrec  # noqa: E402
from crane.data.processed import TEST, TRAIN, VALID  # noqa: E402
from crane.synthetic import random_image_text_features  # noqa: E402


def run_suite(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--scales",
                           "tiny", "--out", str(out), "--threads", "1", *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO)


@pytest.fixture(scope="module")
def suite_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    done = run_suite(out, "--models", "mostpop", "bpr", "freedom:bogus=1", "--epochs", "1",
                     "--no-graphs", "--fresh")
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_suite_writes_csv_markdown_and_machine(suite_out):
    frame = pd.read_csv(suite_out / "benchmark.csv")
    rows = frame.set_index("model")
    assert list(frame["scale"].unique()) == ["tiny"]
    assert rows.loc["mostpop", "status"] == "ok"
    assert rows.loc["bpr", "status"] == "ok"
    bpr = rows.loc["bpr"]
    assert bpr["epochs"] == 1 and bpr["epoch_s"] > 0 and bpr["eval_s"] > 0
    assert bpr["peak_rss_mib"] > 0 and bpr["build_s"] >= 0
    assert bpr["batches_per_epoch"] == -(-bpr["train_interactions"] // 2048)
    assert (bpr["users"], bpr["items"]) == (400, 150)
    assert rows.loc["mostpop", "fit_s"] >= 0 and pd.isna(rows.loc["mostpop", "epoch_s"])
    assert rows.loc["bpr", "threads"] == 1
    # the machine-speed probe, timed in the same process at its start and end
    assert bpr["probe_start_ms"] > 0 and bpr["probe_end_ms"] > 0
    assert bpr["probe_ms"] == pytest.approx((bpr["probe_start_ms"] + bpr["probe_end_ms"]) / 2)

    markdown = (suite_out / "benchmark.md").read_text()
    assert "## tiny: 400 users, 150 items" in markdown
    assert "| bpr |" in markdown and "| mostpop |" in markdown
    assert "| probe (ms) |" in markdown

    machine = json.loads((suite_out / "machine.json").read_text())
    assert machine["threads_requested"] == 1
    assert len(machine["load_average_at_start"]) == 3
    assert machine["versions"]["torch"] not in (None, "absent")
    assert machine["memory_gib"] > 0


def test_failing_model_is_recorded_not_fatal(suite_out):
    frame = pd.read_csv(suite_out / "benchmark.csv").set_index("model")
    status = frame.loc["freedom[bogus=1]", "status"]
    assert status.startswith("error:") and "bogus" in status
    assert "| freedom[bogus=1] |" in (suite_out / "benchmark.md").read_text()


def test_timeout_is_recorded_and_rows_merge(suite_out):
    done = run_suite(suite_out, "--models", "bpr", "--epochs", "1", "--no-graphs",
                     "--timeout", "0.2")
    assert done.returncode == 0, done.stdout + done.stderr
    frame = pd.read_csv(suite_out / "benchmark.csv").set_index("model")
    assert frame.loc["bpr", "status"] == "timeout"
    assert frame.loc["mostpop", "status"] == "ok"  # kept from the first run


def test_model_specs():
    assert bench_run.parse_model_spec("bpr") == ("bpr", "bpr", {})
    name, label, overrides = bench_run.parse_model_spec("freedom")
    assert overrides == {"reg_weight": 0.0, "dropout": 0.8}  # MMRec's timing point
    assert bench_run.parse_model_spec("freedom:reg_weight=1e-4")[2] == {"reg_weight": 1e-4}
    assert bench_run.parse_model_spec("crane:fusion=concat")[1] == "crane[fusion=concat]"
    with pytest.raises(ValueError, match="key=value"):
        bench_run.parse_model_spec("bpr:reg_weight")


def test_generated_interactions_have_the_scale_and_a_heavy_tail():
    spec = synthetic.Scale("t", users=3000, items=800, interactions=40_000)
    data = synthetic.generate_interactions(spec, seed=3)
    assert (data.n_users, data.n_items, len(data.user)) == (3000, 800, 40_000)
    keys = data.user * data.n_items + data.item
    assert len(np.unique(keys)) == len(keys)  # no repeated pair
    user_degree = np.bincount(data.user, minlength=data.n_users)
    item_degree = np.bincount(data.item, minlength=data.n_items)
    assert user_degree.min() >= 5 and item_degree.min() >= 1
    assert user_degree.max() > 4 * np.median(user_degree)
    assert item_degree.max() > 4 * np.median(item_degree)
    # MMRec's rule per user: < 10 items -> one valid, one test; else int(0.2 n) held out
    per_user = {s: np.bincount(data.user[data.split == s], minlength=data.n_users)
                for s in (TRAIN, VALID, TEST)}
    holdout = np.where(user_degree < 10, 2, (0.2 * user_degree).astype(int))
    np.testing.assert_array_equal(per_user[VALID], holdout // 2)
    np.testing.assert_array_equal(per_user[TEST], holdout - holdout // 2)
    np.testing.assert_array_equal(per_user[TRAIN], user_degree - holdout)
    again = synthetic.generate_interactions(spec, seed=3)
    np.testing.assert_array_equal(again.item, data.item)


def test_scales_and_features(tmp_path):
    data = synthetic.load_scale("baby", with_features=False, real_baby_dir=tmp_path)
    assert data.source.startswith("generated")
    assert (data.interactions.n_users, data.interactions.n_items,
            len(data.interactions.user)) == (19_445, 7_050, 160_792)
    features = random_image_text_features(50, 16, 8, seed=7)
    assert features["image"].shape == (50, 16) and features["text"].shape == (50, 8)
    assert features["image"].dtype == np.float32 and features["image"].min() >= 0
    assert features["text"].min() < 0
    # MMRec's recipe for real Baby: one default_rng(7), image first, then text
    rng = np.random.default_rng(7)
    image = np.abs(rng.standard_normal((50, 16), dtype=np.float32))
    np.testing.assert_array_equal(features["image"], image)
    np.testing.assert_array_equal(features["text"],
                                  rng.standard_normal((50, 8), dtype=np.float32))


def test_the_real_folder_is_named_relative_to_the_checkout(tmp_path):
    """Result tables record the data's source: never one machine's absolute path."""
    assert synthetic.relative_to_checkout(synthetic.REAL_BABY_DIR / "mmrec-split") \
        == "../shared/data/amazon2014-baby/mmrec-split"
    frame = pd.DataFrame({"user_id": [0, 0, 0], "item_id": [0, 1, 2], "rating": [5.0] * 3,
                          "timestamp": [1, 2, 3], "split": [TRAIN, VALID, TEST]})
    write_mmrec(tmp_path / "mmrec-split", "baby", frame, np.array(["u"], dtype=object),
                np.array(["a", "b", "c"], dtype=object))
    data = synthetic.load_scale("baby", with_features=False, real_baby_dir=tmp_path)
    folder = data.source.removeprefix("real: ").removesuffix(" (MMRec's split)")
    assert not Path(folder).is_absolute()
    assert (REPO / folder).resolve() == (tmp_path / "mmrec-split").resolve()


def test_max_batches_times_part_of_an_epoch(tmp_path):
    done = run_suite(tmp_path, "--models", "bpr", "--epochs", "1", "--no-graphs",
                     "--max-batches", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    bpr = pd.read_csv(tmp_path / "benchmark.csv").set_index("model").loc["bpr"]
    assert bpr["status"] == "ok"
    assert (bpr["measured_batches"], bpr["batches_per_epoch"]) == (1, 2)
    assert bpr["epoch_s"] > 0
    assert "extrapolated from 1 of 2 batches" in (tmp_path / "benchmark.md").read_text()


def test_extrapolation_counts_the_first_batch_once():
    import measure

    rows = [{"seconds": 13.0}]  # 1 s fixed + 12 s for 5 batches: the first 8 s, then 1 s each
    partial = [{"batch_seconds": 12.0, "batches": 5, "first_batch_seconds": 8.0}]
    (row,) = measure.extrapolate_epochs(rows, partial, batches_per_epoch=100)
    assert row["seconds"] == pytest.approx(1.0 + 8.0 + 99 * 1.0)
    assert (row["measured_batches"], row["first_batch_s"]) == (5, 8.0)


def test_repeated_runs_report_the_median_run(tmp_path):
    done = run_suite(tmp_path, "--models", "bpr", "--epochs", "1", "--no-graphs",
                     "--repeat", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    bpr = pd.read_csv(tmp_path / "benchmark.csv").set_index("model").loc["bpr"]
    runs = [float(value) for value in bpr["epoch_s_runs"].split()]
    assert bpr["repeats"] == 3 and len(runs) == 3
    assert bpr["epoch_s"] == pytest.approx(sorted(runs)[1], abs=5e-4)


def test_repeats_alternate_the_models_round_by_round(tmp_path):
    done = run_suite(tmp_path, "--models", "bpr", "mostpop", "--epochs", "1", "--no-graphs",
                     "--repeat", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    started = [line.split("] ")[1].split(" ...")[0] for line in done.stdout.splitlines()
               if line.startswith("[tiny] ")]
    assert started == ["bpr (run 1 of 2)", "mostpop (run 1 of 2)", "bpr (run 2 of 2)",
                       "mostpop (run 2 of 2)"]
    table = pd.read_csv(tmp_path / "benchmark.csv").set_index("model")
    assert list(table.loc[["bpr", "mostpop"], "repeats"]) == [2, 2]


def test_combine_repeats_takes_medians_peaks_and_failures():
    ok = [{"status": "ok", "epoch_s": t, "eval_s": e, "peak_rss_mib": m, "load_start": [0.1]}
          for t, e, m in ((0.3, 0.1, 900.0), (0.2, 0.3, 950.0), (0.25, 0.2, 910.0),
                          (0.4, 0.2, 905.0))]
    combined = bench_run.combine_repeats(ok)
    assert (combined["epoch_s"], combined["eval_s"]) == (0.25, 0.2)  # lower middle of four
    assert combined["peak_rss_mib"] == 950.0 and combined["repeats"] == 4
    assert combined["epoch_s_runs"] == "0.300 0.200 0.250 0.400"
    failed = {"status": "timeout", "epoch_s": None}
    assert bench_run.combine_repeats([ok[0], failed, ok[1]]) is failed
    assert bench_run.combine_repeats([ok[0]]) is ok[0]


def test_probe_times_the_reference_step_and_restores_threads():
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the probe runs on one thread, then puts the setting back
    try:
        assert probe.reference_step_ms(steps_timed=3) > 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
