"""The run directory (coseg_tf/run_dir.py): restarts, the backup, and its readers.

Issue 15 cases 3 and 4:
- a killed run restarted with other flags: a flag that changes the experiment is
  refused, naming each changed flag with its old and new value, before anything is
  written (config.json, model.json, labeled_ids.txt, the backup and the checkpoints
  stay as they were, and eval still loads the run); the flags a restart may change
  are allowed and recorded in starts.jsonl;
- a restarted run behaves as if it had never stopped: the same weights, history and
  "best" checkpoint as an uninterrupted run (data position, dropout random state and
  the best value are in the backup).

A kill is simulated in this process right after the backup of an interval is
committed (the moment a SIGKILL loses the least); train.py itself is killed with
SIGKILL in tests/test_train_e2e.py.
"""

import csv
import dataclasses
import json

import h5py
import numpy as np
import pytest
from conftest import copy_run as _copy
from conftest import make_synthetic_tfrecords, snapshot as _snapshot, train_until

from coseg_tf import run_dir, train_lib
from coseg_tf.errors import ConfigError


@pytest.fixture(scope="module")
def tfrecords(tmp_path_factory):
    return make_synthetic_tfrecords(tmp_path_factory.mktemp("synthetic"),
                                    num_images=12, image_size=80, seed=3,
                                    val_fraction=0.25, num_shards=2, voc_boxes=False)


def _config(tfrecords, model_dir, **kw):
    base = dict(train_data=tfrecords["train"], val_data=tfrecords["val"],
                model_dir=str(model_dir), init="random", width_multiplier=0.0625,
                crop_size=49, batch_labeled=1, batch_unlabeled=2, num_labeled=4,
                method="coseg", steps=6, checkpoint_every=2, val_steps=2,
                strategy="default", verbose=0)
    base.update(kw)
    return train_lib.TrainConfig(**base)


@pytest.fixture(scope="module")
def stopped_run(tfrecords, tmp_path_factory):
    """A 6-step run (3 intervals of 2) killed after its first interval."""
    model_dir = tmp_path_factory.mktemp("stopped") / "run"
    train_until(_config(tfrecords, model_dir), 1)
    assert not (model_dir / "DONE").exists()
    return model_dir


@pytest.fixture(scope="module")
def uninterrupted_run(tfrecords, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("whole") / "run"
    train_lib.run_training(_config(tfrecords, model_dir))
    return model_dir


def _h5_arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def _history(model_dir):
    return list(csv.DictReader(open(model_dir / "history.csv")))


# === Case 3: a restart with other flags ===

# flag: a new value (the stopped run has the values of _config).
EXPERIMENT_CHANGES = {
    "num_labeled": 3, "labeled_seed": 1, "learning_rate": 0.01, "width_multiplier": 0.125,
    "parts": "head", "steps": 8, "checkpoint_every": 3, "seed": 5, "method": "supervised",
    "batch_unlabeled": 3, "crop_size": 57, "alpha": 0.5, "val_steps": 3,
    "human_region": "instance", "diagnostics": True, "dropout_rate": 0.3,
}


@pytest.mark.parametrize("flag", sorted(EXPERIMENT_CHANGES))
def test_a_flag_that_changes_the_experiment_is_refused_before_anything_is_written(
        tfrecords, stopped_run, tmp_path, flag):
    model_dir = _copy(stopped_run, tmp_path)
    before = _snapshot(model_dir)
    old = getattr(_config(tfrecords, model_dir), flag)
    new = EXPERIMENT_CHANGES[flag]
    with pytest.raises(ConfigError) as e:
        train_lib.run_training(_config(tfrecords, model_dir, **{flag: new}))
    message = str(e.value)
    assert f"--{flag}: {old!r} -> {new!r}" in message, message
    assert str(model_dir / "config.json") in message
    assert "corrupt" not in message and "remove" not in message  # no advice to delete
    assert _snapshot(model_dir) == before  # nothing written, nothing removed
    # The run is intact: eval and export still load its checkpoint.
    network, info = train_lib.load_network(str(model_dir), "last")
    assert info["width_multiplier"] == 0.0625 and info["parts"] == "all4"


def test_every_changed_flag_is_named(tfrecords, stopped_run, tmp_path):
    model_dir = _copy(stopped_run, tmp_path)
    with pytest.raises(ConfigError) as e:
        train_lib.run_training(_config(tfrecords, model_dir, num_labeled=3,
                                       learning_rate=0.01, verbose=1))
    message = str(e.value)
    assert "--num_labeled: 4 -> 3" in message and "--learning_rate: 0.001 -> 0.01" in message
    assert "--verbose:" not in message.split("(only")[0]  # an allowed change is not refused


def test_other_labeled_images_under_the_same_flags_are_refused(tfrecords, tmp_path):
    ids_file = tmp_path / "labeled.txt"
    from pipelines import streams
    ids = streams.read_ids(tfrecords["train"])
    ids_file.write_text("\n".join(ids[:3]) + "\n")
    model_dir = tmp_path / "run"
    config = _config(tfrecords, model_dir, labeled_ids_file=str(ids_file), num_labeled=3)
    train_until(config, 1)
    before = _snapshot(model_dir)
    ids_file.write_text("\n".join(ids[1:4]) + "\n")  # same path, other content
    with pytest.raises(ConfigError, match="trained on other labeled images") as e:
        train_lib.run_training(config)
    assert str(model_dir / "labeled_ids.txt") in str(e.value)
    assert _snapshot(model_dir) == before


def test_allowed_changes_resume_and_are_recorded(tfrecords, stopped_run, tmp_path):
    moved = _copy(stopped_run, tmp_path)  # a run directory moved elsewhere
    recorded = (moved / "config.json").read_bytes()
    history = train_lib.run_training(_config(tfrecords, moved, verbose=2,
                                             keep_checkpoints=True))
    assert len(history.history["loss"]) == 2  # resumed after interval 1 of 3
    assert (moved / "config.json").read_bytes() == recorded  # what the first steps used
    starts = [json.loads(line) for line in (moved / "starts.jsonl").read_text().splitlines()]
    assert [(s["step"], s["new"]) for s in starts] == [(0, True), (2, False)]
    assert starts[1]["changed"] == {"model_dir": [str(stopped_run), str(moved)],
                                    "verbose": [0, 2], "keep_checkpoints": [False, True]}
    assert sorted(p.name for p in (moved / "checkpoints").iterdir()) == [
        "best.weights.h5", "epoch-0002.weights.h5", "epoch-0003.weights.h5",
        "last.weights.h5"]


def test_training_state_without_config_json_is_refused(tfrecords, stopped_run, tmp_path):
    model_dir = _copy(stopped_run, tmp_path)
    (model_dir / "config.json").unlink()
    before = _snapshot(model_dir)
    with pytest.raises(ConfigError, match=r"holds a run \(backup, checkpoints, history.csv, "
                                          r"model.json\) but no config.json"):
        train_lib.run_training(_config(tfrecords, model_dir))
    assert _snapshot(model_dir) == before


def test_another_replica_count_is_refused(tfrecords, stopped_run, tmp_path):
    model_dir = _copy(stopped_run, tmp_path)
    meta_path = model_dir / "backup" / "training_metadata.json"
    meta = json.loads(meta_path.read_text())
    assert meta["replicas"] == 1
    meta_path.write_text(json.dumps(dict(meta, replicas=2)))
    before = _snapshot(model_dir)
    with pytest.raises(ConfigError, match=r"written with 2 replicas in sync, this start has "
                                          r"1 \(--strategy=default"):
        train_lib.run_training(_config(tfrecords, model_dir))
    assert _snapshot(model_dir) == before


def test_config_json_missing_a_newer_flag_counts_its_default(tfrecords, stopped_run,
                                                              tmp_path):
    """A run recorded before a flag existed resumes with the flag at its default, and
    is refused with another value."""
    model_dir = _copy(stopped_run, tmp_path)
    recorded = json.loads((model_dir / "config.json").read_text())
    del recorded["dropout_rate"]
    (model_dir / "config.json").write_text(json.dumps(recorded))
    assert run_dir.changed_flags(recorded, _config(tfrecords, model_dir)) == [
        ("model_dir", str(stopped_run), str(model_dir))]
    assert run_dir.changed_flags(recorded, _config(tfrecords, model_dir, dropout_rate=0.3))[
        -1] == ("dropout_rate", 0.5, 0.3)


# === Case 4: a restart behaves as if it had never stopped ===

def test_a_restarted_run_equals_an_uninterrupted_one(tfrecords, uninterrupted_run,
                                                     stopped_run, tmp_path):
    model_dir = _copy(stopped_run, tmp_path)
    train_lib.run_training(_config(tfrecords, model_dir))
    whole, resumed = _history(uninterrupted_run), _history(model_dir)
    assert len(whole) == len(resumed) == 3
    for a, b in zip(whole, resumed):
        for key in a:
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-5, abs=1e-7), key
    for name in ("last", "best"):
        a = _h5_arrays(uninterrupted_run / "checkpoints" / f"{name}.weights.h5")
        b = _h5_arrays(model_dir / "checkpoints" / f"{name}.weights.h5")
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_best_is_not_taken_by_a_worse_interval_after_a_restart(tfrecords, stopped_run,
                                                                tmp_path):
    """The best value is part of the backup: a first interval after the restart that is
    worse than the intervals before it does not replace best.weights.h5."""
    model_dir = _copy(stopped_run, tmp_path)
    meta_path = model_dir / "backup" / "training_metadata.json"
    meta = json.loads(meta_path.read_text())
    assert meta["monitor"] == "val_loss"
    assert meta["best"] == pytest.approx(float(_history(model_dir)[0]["val_loss"]))
    # Say the intervals before the restart reached a validation loss no later one beats.
    meta_path.write_text(json.dumps(dict(meta, best=1e-9)))
    best_before = (model_dir / "checkpoints" / "best.weights.h5").read_bytes()
    train_lib.run_training(_config(tfrecords, model_dir))
    assert (model_dir / "checkpoints" / "best.weights.h5").read_bytes() == best_before
    assert json.loads(meta_path.read_text())["best"] == pytest.approx(1e-9)


def test_a_backup_of_an_earlier_version_takes_its_best_from_the_history(
        tfrecords, stopped_run, tmp_path):
    model_dir = _copy(stopped_run, tmp_path)
    meta_path = model_dir / "backup" / "training_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({k: meta[k] for k in ("epoch", "step", "weights")}))
    state = run_dir.read_backup(str(model_dir), 2)
    assert state.monitor == "val_loss"
    assert state.best == pytest.approx(float(_history(model_dir)[0]["val_loss"]))


# === The contract's pieces ===

def test_checkpoint_paths_are_built_in_one_place(tmp_path):
    assert run_dir.checkpoint_path("R", "last") == "R/checkpoints/last.weights.h5"
    assert run_dir.checkpoint_path("R", "best") == "R/checkpoints/best.weights.h5"
    assert run_dir.checkpoint_path("R", "/x/epoch-0003.weights.h5") == "/x/epoch-0003.weights.h5"
    with pytest.raises(ConfigError, match="--checkpoint"):
        run_dir.checkpoint_path("R", "")
    with pytest.raises(ConfigError, match=r"--checkpoint=best: .*best.weights.h5 not found"):
        run_dir.require_checkpoint(str(tmp_path), "best")


def test_model_json_records_every_network_argument_and_reads_back(tfrecords, stopped_run):
    from coseg_tf import model as model_lib

    info = json.loads((stopped_run / "model.json").read_text())
    assert set(run_dir.network_args()) <= set(info)  # width_multiplier, dropout_rate, fc6_impl
    assert info["fc6_impl"] == "auto" and info["width_multiplier"] == 0.0625
    assert info["mixed_precision"] == "off" and "dtype_policy" not in info
    # A model.json of an earlier version (no fc6_impl, no dropout_rate; or with a key
    # the builder no longer takes, such as "norm") builds with the builder's defaults.
    old = {k: v for k, v in info.items() if k not in ("fc6_impl", "dropout_rate")}
    old["norm"] = "none"
    network = run_dir.build_network(old)
    reference = model_lib.build_deeplab_largefov(num_classes=6, width_multiplier=0.0625)
    assert [w.shape for w in network.weights] == [w.shape for w in reference.weights]


def test_json_never_holds_nan(tmp_path):
    text = run_dir.to_json({"a": float("nan"), "b": [np.float32("inf"), 1.5],
                            "c": np.float64(2.0)})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": 2.0}


def test_read_history_shows_an_undefined_value_as_none(tmp_path):
    (tmp_path / "history.csv").write_text(
        "epoch,loss,mining_precision\n0,1.5,nan\n1,1.25,0.5\n")
    assert run_dir.read_history(str(tmp_path)) == [
        {"epoch": 0.0, "loss": 1.5, "mining_precision": None},
        {"epoch": 1.0, "loss": 1.25, "mining_precision": 0.5}]


def test_a_run_with_nothing_mined_writes_undefined_not_zero(tfrecords, tmp_path):
    """Issue 15 case 9, end to end: an interval with nothing mined is 'nan' in
    history.csv, None for the readers, null in JSON."""
    from pipeline_helpers import synthetic_arrays, write_split

    arrays = []
    for i in range(6):
        a = synthetic_arrays(f"img_{i}", height=40, width=40, seed=i)
        if i < 2:  # the labeled images show no part: no class point, nothing mined
            a["parts_fine"][:] = 0
            a["person_mask"][:] = 0
        arrays.append(a)
    data = tmp_path / "data"
    data.mkdir()
    write_split(data, "train", arrays, num_shards=1)
    ids = tmp_path / "labeled.txt"
    ids.write_text("img_0\nimg_1\n")
    model_dir = tmp_path / "run"
    train_lib.run_training(_config(tfrecords, model_dir, train_data=str(data / "train-*"),
                                   val_data=None, labeled_ids_file=str(ids), num_labeled=2,
                                   diagnostics=True, parts="head", steps=2))
    (row,) = _history(model_dir)
    assert row["mining_precision"] == "nan" and row["mining_chance"] == "nan"
    (parsed,) = run_dir.read_history(str(model_dir))
    assert parsed["mining_precision"] is None and parsed["loss"] is not None
    assert json.loads(run_dir.to_json(parsed))["mining_precision"] is None


def test_backup_state_fields_are_all_written(stopped_run):
    meta = json.loads((stopped_run / "backup" / "training_metadata.json").read_text())
    assert set(meta) == {f.name for f in dataclasses.fields(run_dir.BackupState)}
    assert meta["epoch"] == 1 and meta["step"] == 2 and meta["data_position"] == 2
    assert meta["rng"] and all(len(s) == 2 for s in meta["rng"])  # dropout's generators
