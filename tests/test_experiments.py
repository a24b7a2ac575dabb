"""The demo's and the sweep's script paths end to end on a few tiny images."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))

TINY_RECIPE = """\
# tiny: the cpu_small recipe at test size
--parts=all4
--width_multiplier=0.0625
--init=random
--crop_size=65
--batch_labeled=1
--batch_unlabeled=3
--learning_rate=0.01
--steps=4
--checkpoint_every=2
--val_steps=2
--strategy=default
--diagnostics
--verbose=0
"""


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "tiny.flags"
    path.write_text(TINY_RECIPE)
    return str(path)


def _run(script, args):
    return subprocess.run([sys.executable, str(REPO / "tools" / script)] + args,
                          capture_output=True, text=True, env=ENV, timeout=900)


@pytest.mark.slow
def test_demo_script_path(tmp_path, recipe):
    data, runs = tmp_path / "data", tmp_path / "runs"
    args = [f"--data_dir={data}", f"--run_dir={runs}", f"--recipe={recipe}",
            "--num_images=16", "--image_size=80", "--num_labeled=3", "--overlays=2"]
    proc = _run("demo.py", args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = (runs / "RESULTS.md").read_text()
    for label in ("(a) supervised, n_f=3", "(b) coseg, n_f=3", "(c) supervised"):
        assert label in results
    assert "| head | body | hand | leg | mean |" in results
    for name in ("a_supervised", "b_coseg", "c_supervised_all"):
        metrics = json.loads((runs / name / "eval_val" / "metrics.json").read_text())
        assert set(metrics["iou"]) >= {"head", "body", "hand", "leg"}
    assert (runs / "overlays.png").stat().st_size > 1000
    assert (runs / "curves.png").stat().st_size > 1000
    # Restarted, it redoes no training.
    again = _run("demo.py", args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("is finished already") == 3


@pytest.mark.slow
def test_sweep_aggregates_over_seeds(tmp_path, recipe):
    data, runs = tmp_path / "data", tmp_path / "runs"
    args = [f"--data_dir={data}", f"--run_dir={runs}", f"--recipe={recipe}",
            "--num_images=16", "--image_size=80", "--num_labeled=2", "--seeds=0,1",
            "--methods=supervised,coseg,gmp,em_adapt", "--warmup_steps=2"]
    proc = _run("sweep.py", args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = json.loads((runs / "sweep.json").read_text())
    assert len(sweep["runs"]) == 4 * 2 + 1
    rows = {(r["method"], r["num_labeled"]): r for r in sweep["rows"]}
    assert set(rows) == {("supervised", 2), ("coseg", 2), ("gmp", 2), ("em_adapt", 2),
                         ("supervised_all", None)}
    assert rows[("coseg", 2)]["seeds"] == [0, 1]
    # Two checkpoints of 2 steps: the final and the last-k views are both there.
    evals = sweep["runs"]["coseg_nf2_seed0"]["eval"]
    assert set(evals) == {"last", "epoch-0001", "epoch-0002"}
    assert "mining" in rows[("coseg", 2)]
    table = (runs / "SWEEP.md").read_text()
    assert "| Method | n_f | seeds | head | body | hand | leg | mean | mean (last 3) |" in table
    assert "| gmp (image labels) | 2 | 2 |" in table
    assert "| em_adapt (image labels) | 2 | 2 |" in table
    # only the image-label runs recorded (and read) image-level labels
    for name in ("gmp_nf2_seed0", "em_adapt_nf2_seed1"):
        assert (runs / name / "image_labels.tsv").exists()
    for name in ("coseg_nf2_seed0", "supervised_nf2_seed1", "supervised_all"):
        assert not (runs / name / "image_labels.tsv").exists()
    # One supervised warm-up per labeled set (and one for the ceiling), shared by the
    # methods, which start from it.
    for seed in (0, 1):
        warm = json.loads((runs / f"warmup_nf2_seed{seed}" / "config.json").read_text())
        assert warm["method"] == "supervised" and warm["labeled_seed"] == seed
        for m in ("supervised", "coseg", "gmp", "em_adapt"):
            config = json.loads((runs / f"{m}_nf2_seed{seed}" / "config.json").read_text())
            assert config["init"] == "run"
            assert config["init_weights"] == str(runs / f"warmup_nf2_seed{seed}")
    assert json.loads((runs / "supervised_all" / "config.json").read_text())[
        "init_weights"] == str(runs / "warmup_all")
    assert "2 supervised warm-up steps" in table
    # A second process can tabulate what is finished without training anything.
    again = _run("sweep.py", args + ["--aggregate_only"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "train:" not in again.stdout
    assert (runs / "figure4.png").stat().st_size > 1000


def test_sweep_reads_an_undefined_mining_precision_as_undefined(tmp_path):
    """Issue 15 case 9: an interval with nothing mined is 'nan' in history.csv; the
    sweep's summary holds None there (null in sweep.json), never 0 and never NaN."""
    from tools import sweep

    for seed, value in ((0, "nan"), (1, "0.25")):
        run = tmp_path / f"coseg_nf2_seed{seed}"
        run.mkdir()
        (run / "history.csv").write_text(
            "epoch,loss,mining_chance,mining_precision,mining_precision/head\n"
            f"0,1.0,0.1,0.5,0.5\n1,0.9,{value},{value},nan\n")
    first = sweep.mining_summary(str(tmp_path / "coseg_nf2_seed0"))
    assert first == {"mining_chance": None, "mining_precision": None,
                     "mining_precision/head": None}
    second = sweep.mining_summary(str(tmp_path / "coseg_nf2_seed1"))
    assert second["mining_precision"] == 0.25 and second["mining_precision/head"] is None
    results = {f"coseg_nf2_seed{s}": {"eval": {"last": {"iou": {}, "part_mean_iou": 0.1}},
                                      "mining": m} for s, m in ((0, first), (1, second))}
    runs = [(name, "coseg", 2, s, {}) for s, name in enumerate(results)]
    (row,) = sweep.aggregate(results, runs, ["background", "head"], ["head"])
    assert row["mining"]["mining_precision"] == (0.25, 0.0)  # seed 0 left out, not 0
    assert row["mining"]["mining_precision/head"] == (None, None)
    json.dumps({"runs": results, "rows": [row]}, allow_nan=False)  # valid JSON
