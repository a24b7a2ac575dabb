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


def test_sweep_methods_are_registered_methods_with_training_flags():
    """Every sweep entry trains a method of the objectives' registry with overrides
    that are training flags; the image-label mark comes from the registry."""
    from coseg_tf import objectives, train_lib
    from tools import sweep

    fields = set(train_lib.TrainConfig.__dataclass_fields__)
    for name, overrides in sweep.METHODS.items():
        assert overrides["method"] in objectives.REGISTRY, name
        assert set(overrides) <= fields, name
        objective = objectives.get(overrides["method"])
        assert sweep._reads_image_labels(name) == objective.needs.image_labels
    for name in ("fixmatch", "unimatch", "coseg_fixmatch", "coseg_unimatch",
                 "coseg_w1_fixmatch", "coseg_w1_unimatch"):
        assert name in sweep.METHODS
    assert sweep._label("gmp") == "gmp (image labels)"
    assert sweep._label("coseg_w1_fixmatch") == "coseg_w1_fixmatch"


def test_sweep_tabulates_the_confident_share_of_the_consistency_methods():
    from tools import sweep

    names = ["background", "head", "body", "hand", "leg", "other"]
    evaluation = {"last": {"iou": {n: 0.5 for n in names}, "part_mean_iou": 0.5}}
    runs = sweep.grid([10], [0, 1], ["supervised", "fixmatch"], ceiling=False)
    results = {}
    for name, method, _, seed, _ in runs:
        history = [{"loss": 1.0}, {"loss": 0.9}]
        if method == "fixmatch":
            history = [{"loss": 1.0, "pseudo_confident": 0.1 + seed / 10},
                       {"loss": 0.9, "pseudo_confident": 0.3 + seed / 10}]
        results[name] = {"eval": evaluation, "mining": None, "history": history}
    rows = sweep.aggregate(results, runs, names, ["head", "body", "hand", "leg"])
    fixmatch = next(r for r in rows if r["method"] == "fixmatch")
    assert fixmatch["pseudo_confident"][-1][0] == pytest.approx(0.35)
    assert "pseudo_confident" not in next(r for r in rows if r["method"] == "supervised")
    table = sweep.markdown_consistency(rows)
    # 30 % and 40 % on the two seeds: mean 35, sample std 7.07
    assert "| fixmatch | 10 | 35.0 ± 7.1 | 15.0 → 35.0 |" in table
    assert "supervised" not in table.split("|---|")[-1]


def test_sweep_pairs_each_method_with_supervised_by_seed():
    """method − supervised on the same seed, by hand: coseg 0.20 − 0.10 and 0.22 − 0.18
    on seeds 0 and 1 is +10 and +4 points, mean +7, sample std sqrt(18) = 4.24; gmp has
    seed 0 only; a seed that supervised lacks is not paired."""
    from tools import sweep

    values = {("supervised", 0): 0.10, ("supervised", 1): 0.18, ("coseg", 0): 0.20,
              ("coseg", 1): 0.22, ("gmp", 0): 0.05, ("coseg", 2): 0.30}
    runs = sweep.grid([10], [0, 1, 2], ["supervised", "coseg", "gmp"], ceiling=True)
    results = {name: {"eval": {"last": {"part_mean_iou": values[(method, seed)]}}}
               for name, method, _, seed, _ in runs if (method, seed) in values}
    results["supervised_all"] = {"eval": {"last": {"part_mean_iou": 0.5}}}
    rows = {r["method"]: r for r in sweep.paired(results, runs)}
    assert set(rows) == {"coseg", "gmp"}  # neither supervised itself nor the ceiling
    assert rows["coseg"]["seeds"] == [0, 1]
    assert rows["coseg"]["diffs"] == pytest.approx([0.10, 0.04])
    mean, std = rows["coseg"]["mean_std"]
    assert (mean, std) == pytest.approx((0.07, 0.0424264), abs=1e-6)
    assert rows["gmp"]["mean_std"] == pytest.approx((-0.05, 0.0))
    table = sweep.markdown_paired(list(rows.values()))
    assert "| coseg | 10 | 0, 1 | +10.0, +4.0 | +7.0 ± 4.2 |" in table
    assert "| gmp (image labels) | 10 | 0 | -5.0 | -5.0 ± 0.0 |" in table


@pytest.mark.slow
def test_demo_script_path(tmp_path, recipe):
    data, runs = tmp_path / "data", tmp_path / "runs"
    args = [f"--data_dir={data}", f"--run_dir={runs}", f"--recipe={recipe}",
            "--num_images=16", "--image_size=80", "--num_labeled=3", "--overlays=2",
            "--warmup_steps=2", "--ceiling_steps=6"]
    proc = _run("demo.py", args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = (runs / "RESULTS.md").read_text()
    for label in ("(a) supervised, n_f=3", "(b) coseg, n_f=3", "(c) supervised"):
        assert label in results
    assert "| head | body | hand | leg | mean |" in results
    for name in ("a_supervised", "b_coseg", "c_supervised_all"):
        metrics = json.loads((runs / name / "eval_val" / "metrics.json").read_text())
        assert set(metrics["iou"]) >= {"head", "body", "hand", "leg"}
    # (a) and (b) start from the same supervised warm-up on their labeled images.
    for name in ("a_supervised", "b_coseg"):
        config = json.loads((runs / name / "config.json").read_text())
        assert config["init"] == "run" and config["init_weights"] == str(runs / "warmup_nf3")
        assert config["steps"] == 4  # the recipe's
    # (c), the ceiling, trains --ceiling_steps after its own warm-up.
    assert json.loads((runs / "c_supervised_all" / "config.json").read_text())["steps"] == 6
    assert "Steps: 2 supervised warm-up + 4 for (a) and (b) (one warm-up shared), 2 + 6 " \
        "for (c)." in results
    assert (runs / "overlays.png").stat().st_size > 1000
    assert (runs / "curves.png").stat().st_size > 1000
    # Restarted, it redoes no training.
    again = _run("demo.py", args)
    assert again.returncode == 0, again.stderr[-3000:]
    # (each run and its warm-up: (a) and (b) share one, listed twice)
    assert again.stdout.count("is finished already") == 6
    # Another schedule for (c) in the same folder: a clear refusal, not a traceback, and
    # the finished (c) is left as it was.
    other = _run("demo.py", args[:-1] + ["--ceiling_steps=8"])
    assert other.returncode == 2, other.stderr[-3000:]
    assert "demo.py: error: " in other.stderr and "Traceback" not in other.stderr
    assert "c_supervised_all holds a finished run of other flags (--steps: 6 -> 8)" \
        in other.stderr
    assert json.loads((runs / "c_supervised_all" / "config.json").read_text())["steps"] == 6


@pytest.mark.slow
def test_sweep_aggregates_over_seeds(tmp_path, recipe):
    data, runs, kept = tmp_path / "data", tmp_path / "runs", tmp_path / "kept"
    args = [f"--data_dir={data}", f"--run_dir={runs}", f"--recipe={recipe}",
            "--num_images=16", "--image_size=80", "--num_labeled=2", "--seeds=0,1",
            "--methods=supervised,coseg_w1_agreement,gmp",
            "--warmup_steps=2", f"--results_dir={kept}"]
    proc = _run("sweep.py", args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = json.loads((runs / "sweep.json").read_text())
    assert len(sweep["runs"]["all4"]) == 3 * 2 + 1
    rows = {(r["method"], r["num_labeled"]): r for r in sweep["rows"]["all4"]}
    assert set(rows) == {("supervised", 2), ("gmp", 2), ("coseg_w1_agreement", 2),
                         ("supervised_all", None)}
    coseg = rows[("coseg_w1_agreement", 2)]
    assert coseg["seeds"] == [0, 1]
    # Two checkpoints of 2 steps: the final and the last-k views are both there.
    evals = sweep["runs"]["all4"]["coseg_w1_agreement_nf2_seed0"]["eval"]
    assert set(evals) == {"last", "epoch-0001", "epoch-0002"}
    assert "mining" in coseg
    # mining precision over training: one point per interval, averaged over seeds
    assert len(coseg["mining_curve"]) == 2
    table = (runs / "SWEEP.md").read_text()
    assert "| Method | n_f | seeds | head | body | hand | leg | mean | mean (last 3) |" in table
    assert "| gmp (image labels) | 2 | 2 |" in table
    assert "÷ chance over training" in table
    root = runs / "all4"
    # only the image-label runs recorded (and read) image-level labels
    for name in ("gmp_nf2_seed0", "gmp_nf2_seed1"):
        assert (root / name / "image_labels.tsv").exists()
    for name in ("coseg_w1_agreement_nf2_seed0", "supervised_nf2_seed1", "supervised_all"):
        assert not (root / name / "image_labels.tsv").exists()
    # the mining option reached the run's config
    config = json.loads((root / "coseg_w1_agreement_nf2_seed0" / "config.json").read_text())
    assert config["mining_agreement"] is True and config["beta"] == 1.0
    # One supervised warm-up per labeled set (and one for the ceiling), shared by the
    # methods, which start from it.
    for seed in (0, 1):
        warm = json.loads((root / f"warmup_nf2_seed{seed}" / "config.json").read_text())
        assert warm["method"] == "supervised" and warm["labeled_seed"] == seed
        for m in ("supervised", "coseg_w1_agreement", "gmp"):
            config = json.loads((root / f"{m}_nf2_seed{seed}" / "config.json").read_text())
            assert config["init"] == "run"
            assert config["init_weights"] == str(root / f"warmup_nf2_seed{seed}")
    assert json.loads((root / "supervised_all" / "config.json").read_text())[
        "init_weights"] == str(root / "warmup_all")
    assert "2 supervised warm-up steps" in table
    # Every finished run left its small result JSON (evaluations, history, config).
    kept_run = json.loads((kept / "all4" / "coseg_w1_agreement_nf2_seed1.json").read_text())
    assert kept_run["eval"] == sweep["runs"]["all4"]["coseg_w1_agreement_nf2_seed1"]["eval"]
    assert len(kept_run["history"]) == 2 and kept_run["config"]["labeled_seed"] == 1
    # A second process can tabulate what is finished without training anything.
    again = _run("sweep.py", args + ["--aggregate_only"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "train:" not in again.stdout
    assert (runs / "figure4.png").stat().st_size > 1000
    assert (runs / "mining.png").stat().st_size > 1000
    # On a fresh machine (no run directories), the kept results are enough: nothing is
    # trained again and the table is the same.
    fresh = tmp_path / "fresh"
    again = _run("sweep.py", [a.replace(str(runs), str(fresh)) for a in args])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "train:" not in again.stdout
    assert json.loads((fresh / "sweep.json").read_text())["rows"] == sweep["rows"]
    # Kept results of another setting (here: other steps) are never mixed into a table.
    other = _run("sweep.py", [a.replace(str(runs), str(tmp_path / "other")) for a in args]
                 + ["--steps=3"])
    assert other.returncode != 0
    assert "is a run of another setting than this sweep's (--steps: 4 -> 3)" in other.stderr
    assert "kept" in other.stderr and "train:" not in other.stdout
    assert kept_run == json.loads((kept / "all4" / "coseg_w1_agreement_nf2_seed1.json")
                                  .read_text())


@pytest.mark.slow
def test_sweep_table1_one_model_per_part(tmp_path, recipe):
    data, runs = tmp_path / "data", tmp_path / "runs"
    args = [f"--data_dir={data}", f"--run_dir={runs}", f"--recipe={recipe}",
            "--num_images=16", "--image_size=80", "--num_labeled=2", "--seeds=0",
            "--methods=supervised,coseg", "--parts=head,hand", "--warmup_steps=0",
            "--noceiling"]
    proc = _run("sweep.py", args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (runs / "SWEEP.md").read_text()
    assert "| Method | n_f | head | head others | head (last 3) | hand | hand others |" \
        in table
    assert "| supervised | 2 |" in table and "| coseg | 2 |" in table
    for parts in ("head", "hand"):
        config = json.loads((runs / parts / "coseg_nf2_seed0" / "config.json").read_text())
        assert config["parts"] == parts


def test_a_finished_run_of_other_flags_is_refused_not_reused(tmp_path):
    """A run folder finished under an older recipe is neither taken as this recipe's
    run nor overwritten: the message names the folder and each changed flag."""
    import dataclasses

    from coseg_tf import run_dir
    from tools import experiments

    recipe = experiments.read_flagfile(experiments.find_recipe(experiments.DEMO_RECIPE))
    model_dir = str(tmp_path / "a_supervised")
    config = experiments.run_config(model_dir, recipe, {"method": "supervised"},
                                    "train-*", "val-*")
    os.makedirs(model_dir)
    old = dataclasses.asdict(dataclasses.replace(config, steps=config.steps // 2,
                                                 mixed_precision="off"))
    (tmp_path / "a_supervised" / run_dir.CONFIG_FILE).write_text(json.dumps(old))
    (tmp_path / "a_supervised" / run_dir.DONE_FILE).write_text("steps 1\n")
    with pytest.raises(ValueError) as err:
        experiments.train_run(model_dir, recipe, {"method": "supervised"}, "train-*",
                              "val-*")
    assert model_dir in str(err.value)
    assert f"--steps: {config.steps // 2} -> {config.steps}" in str(err.value)
    assert f"--mixed_precision: 'off' -> {config.mixed_precision!r}" in str(err.value)
    assert json.loads((tmp_path / "a_supervised" / run_dir.CONFIG_FILE).read_text()) == old
    # The same flags in another folder, on other data paths: the same experiment.
    moved = dict(dataclasses.asdict(config), model_dir="elsewhere", train_data="x-*")
    assert experiments.setting_changes(moved, config) == []


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
    first = sweep.mining_summary(sweep.read_history(str(tmp_path / "coseg_nf2_seed0")))
    assert first == {"mining_chance": None, "mining_precision": None,
                     "mining_precision/head": None}
    second = sweep.mining_summary(sweep.read_history(str(tmp_path / "coseg_nf2_seed1")))
    assert second["mining_precision"] == 0.25 and second["mining_precision/head"] is None
    results = {f"coseg_nf2_seed{s}": {"eval": {"last": {"iou": {}, "part_mean_iou": 0.1}},
                                      "mining": m} for s, m in ((0, first), (1, second))}
    runs = [(name, "coseg", 2, s, {}) for s, name in enumerate(results)]
    (row,) = sweep.aggregate(results, runs, ["background", "head"], ["head"])
    assert row["mining"]["mining_precision"] == (0.25, 0.0)  # seed 0 left out, not 0
    assert row["mining"]["mining_precision/head"] == (None, None)
    json.dumps({"runs": results, "rows": [row]}, allow_nan=False)  # valid JSON
