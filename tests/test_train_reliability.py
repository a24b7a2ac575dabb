"""Training and evaluation against broken state and bad data.

- A corrupt, half-written or inconsistent backup (what a restarted run resumes from)
  is refused with a message naming the file, before any step; leftovers of a save
  that was killed midway are ignored and cleaned.
- A corrupt checkpoint or model.json is refused by load_network and by eval.py.
- A NaN loss stops train.py with a clear message, exit code 3, and no NaN weights in
  any file it wrote.
- TFRecords of another schema (anywhere in the pattern), empty files and empty
  patterns are refused before any work; so is an eval set whose class count differs
  from the checkpoint's.

Runs go through `train_lib.run_training` in this process (strategy "default") where
the refusal is the point, and through train.py / eval.py where the exit code is.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import copy_run as _copy
from conftest import make_synthetic_tfrecords, snapshot as _snapshot, train_until
import tensorflow as tf

from coseg_tf import train_lib
from coseg_tf.train_lib import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))


@pytest.fixture(scope="module")
def tfrecords(tmp_path_factory):
    return make_synthetic_tfrecords(tmp_path_factory.mktemp("synthetic"),
                                    num_images=12, image_size=80, seed=2,
                                    val_fraction=0.25, num_shards=2, voc_boxes=False)


def _config(tfrecords, model_dir, **kw):
    base = dict(train_data=tfrecords["train"], model_dir=str(model_dir), init="random",
                width_multiplier=0.0625, crop_size=49, batch_labeled=1, batch_unlabeled=2,
                num_labeled=4, method="coseg", steps=4, checkpoint_every=2,
                strategy="default", verbose=0)
    base.update(kw)
    return train_lib.TrainConfig(**base)


@pytest.fixture(scope="module")
def trained_run(tfrecords, tmp_path_factory):
    """A finished 4-step run (2 intervals of 2 steps), trained in this process."""
    model_dir = tmp_path_factory.mktemp("run") / "run"
    train_lib.run_training(_config(tfrecords, model_dir))
    return model_dir


def test_the_run_left_a_committed_backup(trained_run):
    backup = trained_run / "backup"
    meta = json.loads((backup / "training_metadata.json").read_text())
    assert {k: meta[k] for k in ("epoch", "step", "weights", "data_position", "monitor")} == {
        "epoch": 2, "step": 4, "weights": "state-000002.weights.h5", "data_position": 4,
        "monitor": "loss"}
    assert sorted(p.name for p in backup.iterdir()) == [
        "state-000002.weights.h5", "training_metadata.json"]  # older state removed
    assert sorted(p.name for p in (trained_run / "checkpoints").iterdir()) == [
        "best.weights.h5", "last.weights.h5"]  # no temporary file left


def test_a_finished_run_started_again_writes_nothing(tfrecords, trained_run, tmp_path):
    model_dir = _copy(trained_run, tmp_path)
    before = _snapshot(model_dir)
    history = train_lib.run_training(_config(tfrecords, model_dir))
    assert history.history == {}
    assert _snapshot(model_dir) == before  # no new start, log, checkpoint or DONE
    # Killed after its last backup, before DONE: the start writes DONE, nothing else.
    (model_dir / "DONE").unlink()
    train_lib.run_training(_config(tfrecords, model_dir))
    assert (model_dir / "DONE").read_text().split() == ["steps", "4"]
    assert _snapshot(model_dir) == before


# === A broken backup is refused before any step ===

def _write(path, text):
    pathlib.Path(path).write_text(text)


def _truncate(path, keep=0.5):
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[:int(len(data) * keep)])


META = "backup/training_metadata.json"
STATE = "backup/state-000002.weights.h5"

# name: (how to break the run directory, the file named, words of the message, flags)
BROKEN_BACKUPS = {
    "metadata_half_written": (lambda d: _write(d / META, '{"epoch": 2, "st'), META,
                              "is corrupt or half-written (JSONDecodeError", {}),
    "metadata_not_json": (lambda d: (d / META).write_bytes(b"\x00\xff" * 20), META,
                          "is corrupt or half-written", {}),
    "metadata_bad_epoch": (lambda d: _write(d / META, '{"epoch": -1}'), META,
                           "epoch -1 is not an integer >= 0", {}),
    "metadata_names_missing_file": (
        lambda d: (d / STATE).unlink(), META, "which does not exist (the backup is "
        "incomplete)", {}),
    "weights_half_written": (lambda d: _truncate(d / STATE), STATE,
                             "cannot be read", {}),
    "weights_zero_bytes": (lambda d: _truncate(d / STATE, 0), STATE, "cannot be read", {}),
    "weights_of_another_step": (
        lambda d: _write(d / META, json.dumps({"epoch": 1, "step": 2, "weights":
                                               "state-000002.weights.h5"})),
        STATE, "are at step 4, but the backup metadata says 1 intervals of 2 steps", {}),
}


@pytest.mark.parametrize("case", sorted(BROKEN_BACKUPS))
def test_broken_backup_is_refused_before_any_step(tfrecords, trained_run, tmp_path, case):
    model_dir = _copy(trained_run, tmp_path)
    breaker, named, words, flags = BROKEN_BACKUPS[case]
    breaker(model_dir)
    before = _snapshot(model_dir)
    with pytest.raises(ConfigError) as e:  # the run's own flags (tests/test_run_dir.py:
        # another --checkpoint_every is refused as a flag before the backup is read)
        train_lib.run_training(_config(tfrecords, model_dir, **flags))
    message = str(e.value)
    assert str(model_dir / named) in message and words in message, message
    assert f"remove {model_dir / 'backup'}" in message  # and says what to do
    # Nothing was written (no step ran, no file of the run changed).
    assert _snapshot(model_dir) == before


def test_leftovers_of_a_killed_save_are_ignored_and_cleaned(tfrecords, tmp_path):
    model_dir = tmp_path / "run"
    train_until(_config(tfrecords, model_dir, steps=6), 2)  # killed after step 4
    # A save killed midway: a partial state file under a temporary name, never
    # committed by the metadata; a partial checkpoint under a temporary name.
    (model_dir / "backup" / ".tmp-999-state-000003.weights.h5").write_bytes(b"\x89HDF\r\n")
    (model_dir / "checkpoints" / ".tmp-999-last.weights.h5").write_bytes(b"\x89HDF")
    history = train_lib.run_training(_config(tfrecords, model_dir, steps=6))
    assert len(history.history["loss"]) == 1  # resumed after step 4: one more interval
    assert (model_dir / "DONE").read_text().split() == ["steps", "6"]
    assert sorted(p.name for p in (model_dir / "backup").iterdir()) == [
        "state-000003.weights.h5", "training_metadata.json"]
    train_lib.load_network(str(model_dir), "last")


# === A broken checkpoint or model.json ===

@pytest.mark.parametrize("breaker, named, words", [
    (lambda d: _truncate(d / "checkpoints" / "last.weights.h5"),
     "checkpoints/last.weights.h5", "corrupt or half-written"),
    (lambda d: _write(d / "model.json", '{"architecture": "deeplab'),
     "model.json", "is corrupt (JSONDecodeError"),
    (lambda d: _write(d / "model.json", '{"parts": "all4"}'),
     "model.json", "is corrupt (KeyError"),
    # The checkpoint has 6 classes; model.json (edited) says 3.
    (lambda d: _write(d / "model.json", json.dumps(dict(
        json.loads((d / "model.json").read_text()), parts="head", num_classes=3,
        class_names=["background", "head", "other"]))),
     "checkpoints/last.weights.h5", "cannot be read"),
], ids=["half_written_checkpoint", "half_written_model_json", "model_json_without_keys",
        "checkpoint_of_another_class_count"])
# Keras warns while it tries the mismatched file, before the refusal this test expects.
@pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning")
def test_broken_checkpoint_is_refused(trained_run, tmp_path, breaker, named, words):
    model_dir = _copy(trained_run, tmp_path)
    breaker(model_dir)
    with pytest.raises(ConfigError) as e:
        train_lib.load_network(str(model_dir), "last")
    assert str(model_dir / named) in str(e.value) and words in str(e.value), str(e.value)


def _eval(*args):
    return subprocess.run([sys.executable, str(REPO / "eval.py"), *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_eval_refuses_a_half_written_checkpoint_and_another_class_count(
        tfrecords, trained_run, tmp_path):
    model_dir = _copy(trained_run, tmp_path)
    _truncate(model_dir / "checkpoints" / "last.weights.h5")
    res = _eval(f"--model_dir={model_dir}", f"--eval_data={tfrecords['val']}")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "eval.py: error: --checkpoint=last" in res.stderr
    assert str(model_dir / "checkpoints" / "last.weights.h5") in res.stderr
    assert "corrupt or half-written" in res.stderr and not res.stdout.strip()
    # An eval set of another class count than the (real) checkpoint's: refused before
    # the network is built or an image read.
    res = _eval(f"--model_dir={trained_run}", f"--eval_data={tfrecords['val']}",
                "--parts=leg")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "--parts=leg has 3 classes" in res.stderr and "has 6 classes" in res.stderr
    assert not (trained_run / "eval_val").exists()


# === NaN ===

def _finite_h5(path):
    """True when every float dataset of the .weights.h5 file is finite."""
    bad = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: bad.append(name) if isinstance(obj, h5py.Dataset)
                     and obj.dtype.kind == "f" and not np.isfinite(obj[()]).all() else None)
    return not bad


def test_infinite_weights_after_a_finite_loss_are_never_saved(tmp_path):
    # One step with a finite loss whose update overflows the weights: the loss check
    # cannot see it; StopOnNaN checks the weights before the savers after it run.
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(3e38), loss="mse")
    path = tmp_path / "last.weights.h5"
    x, y = np.ones((4, 1), np.float32), np.full((4, 1), 10.0, np.float32)
    with pytest.raises(FloatingPointError, match=r"weight tensor\(s\) hold NaN/Inf at step "
                       r"1 \(e\.g\. sequential.*/kernel"):
        model.fit(x, y, epochs=1, batch_size=4, verbose=0,
                  callbacks=[train_lib.StopOnNaN(), train_lib.SaveWeights(str(path))])
    assert not path.exists()
    assert not np.isfinite(model.layers[0].kernel.numpy()).all()


@pytest.mark.slow
def test_nan_loss_stops_train_py_without_writing_nan_weights(tfrecords, tmp_path):
    model_dir = tmp_path / "nan_run"
    # A learning rate of 1e12 blows the weights up within a few steps; a checkpoint
    # every step means the step that first makes them infinite would be saved
    # unless the weights are checked before.
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--init=random", "--width_multiplier=0.0625",
         "--crop_size=49", "--batch_labeled=1", "--batch_unlabeled=2", "--num_labeled=4",
         "--method=coseg", "--steps=30", "--checkpoint_every=1", "--learning_rate=1e12",
         "--strategy=default", "--verbose=0", f"--train_data={tfrecords['train']}",
         f"--model_dir={model_dir}"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "train.py: error:" in proc.stderr
    assert ("training loss became nan" in proc.stderr
            or "hold NaN/Inf" in proc.stderr), proc.stderr[-2000:]
    assert "Lower --learning_rate" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (model_dir / "DONE").exists()
    written = sorted(model_dir.rglob("*.weights.h5"))
    for path in written:
        assert _finite_h5(path), path
    # The backup (if any) resumes from finite weights, at the step it names.
    meta_path = model_dir / "backup" / "training_metadata.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        assert _finite_h5(model_dir / "backup" / meta["weights"])


# === Bad data, before any work ===

def _other_schema_file(path):
    example = tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[3]))}))
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(example.SerializeToString())


@pytest.mark.parametrize("case", ["other_schema_among_good", "other_schema_only",
                                  "empty_file", "empty_pattern", "no_match"])
def test_bad_training_data_is_refused_before_any_work(tfrecords, tmp_path, case):
    data = tmp_path / "data"
    data.mkdir()
    for shard in tfrecords["dir"].glob("train-*"):
        shutil.copy(shard, data)
    if case == "other_schema_among_good":
        # After the good shards in sorted order: only a check of every file finds it.
        _other_schema_file(data / "train-zz-other.tfrecord")
        pattern, words = str(data / "train-*"), ["train-zz-other.tfrecord",
                                                  "missing feature keys", "'human/boxes'"]
    elif case == "other_schema_only":
        _other_schema_file(data / "other.tfrecord")
        pattern, words = str(data / "other*"), ["other.tfrecord", "missing feature keys"]
    elif case == "empty_file":
        (data / "train-zz-empty.tfrecord").write_bytes(b"")
        pattern, words = str(data / "train-*"), ["train-zz-empty.tfrecord", "holds no record"]
    elif case == "empty_pattern":
        pattern, words = "", ["non-empty"]
    else:
        pattern, words = str(data / "nothing-*"), ["nothing-*"]
    model_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as e:
        train_lib.run_training(_config(tfrecords, model_dir, train_data=pattern))
    assert str(e.value).startswith("--train_data="), str(e.value)
    for word in words:
        assert word in str(e.value), str(e.value)
    assert not model_dir.exists()


def test_bad_strategy_setting_is_a_config_error(tfrecords, tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 3}}))
    with pytest.raises(ConfigError, match="TF_CONFIG task index 3 is not in 0..0"):
        train_lib.run_training(_config(tfrecords, tmp_path / "run", strategy="multi_worker"))
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ConfigError, match="needs the TF_CONFIG environment variable"):
        train_lib.run_training(_config(tfrecords, tmp_path / "run", strategy="multi_worker"))
    assert not (tmp_path / "run").exists()


# === A bad record met mid-run (issue 15 case 6) ===

def _rewrite_records(src_pattern, dest_dir, edit):
    """Copies the shards of `src_pattern` into dest_dir, `edit`ing each record;
    returns (pattern, {id: (file, index)})."""
    from pipelines import records as records_lib

    dest_dir.mkdir()
    where = {}
    for path in sorted(pathlib.Path(p) for p in tf.io.gfile.glob(src_pattern)):
        out = dest_dir / path.name
        with tf.io.TFRecordWriter(str(out)) as writer:
            for index, record in enumerate(tf.data.TFRecordDataset(str(path))):
                data = record.numpy()
                ex = records_lib.parse_example(data)
                data = edit(index, ex, data)
                writer.write(data)
                where[ex["id"]] = (str(out), index)
    return str(dest_dir / "*.tfrecord"), where


def _bad_parts(victim):
    """An edit that writes part id 255 into the part map of the record `victim`."""
    from pipelines import records as records_lib

    def edit(index, ex, data):
        if ex["id"] != victim:
            return data
        parts = ex["parts_fine"].copy()
        parts[parts.shape[0] // 2, :] = 255
        return records_lib.make_example(
            jpeg=ex["jpeg"], image_id=ex["id"], height=ex["height"], width=ex["width"],
            boxes=ex["boxes"], person_mask=ex["person_mask"], parts_fine=parts)
    return edit


def _second_record_id(pattern):
    first = sorted(tf.io.gfile.glob(pattern))[0]
    from pipelines import streams
    return streams.read_ids(first)[1]


def test_train_names_a_record_with_an_out_of_range_part_id(tfrecords, tmp_path):
    victim = _second_record_id(tfrecords["train"])  # not a first record: validation passes
    pattern, where = _rewrite_records(tfrecords["train"], tmp_path / "data", _bad_parts(victim))
    labeled = tmp_path / "labeled.txt"
    labeled.write_text(victim + "\n")
    model_dir = tmp_path / "run"
    config = _config(tfrecords, model_dir, train_data=pattern, labeled_ids_file=str(labeled),
                     num_labeled=1, method="supervised", steps=2)
    train_lib.validate(config)  # validation reads first records only: it passes
    with pytest.raises(train_lib.BadRecordError) as e:
        train_lib.run_training(config)
    path, index = where[victim]
    assert str(e.value).startswith(
        f"--train_data={pattern}: record {index} of {path} (image id {victim!r}): parts/fine "
        "holds the part id 255, outside the part vocabulary 0..24"), str(e.value)
    assert isinstance(e.value, ConfigError)  # train.py: exit code 2


@pytest.mark.parametrize("breakage", ["part_id_255", "jpeg_garbage", "truncated_file"])
def test_eval_names_a_bad_record(tfrecords, trained_run, tmp_path, breakage):
    from coseg_tf import evaluation

    victim = _second_record_id(tfrecords["val"])
    if breakage == "part_id_255":
        edit = _bad_parts(victim)
    else:
        def edit(index, ex, data):  # JPEG marker, then bytes no decoder takes
            if ex["id"] != victim or breakage != "jpeg_garbage":
                return data
            from pipelines import records as records_lib
            return records_lib.make_example(
                jpeg=b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, image_id=ex["id"],
                height=ex["height"], width=ex["width"], boxes=ex["boxes"],
                person_mask=ex["person_mask"], parts_fine=ex["parts_fine"])
    pattern, where = _rewrite_records(tfrecords["val"], tmp_path / "data", edit)
    path, index = where[victim]
    if breakage == "truncated_file":  # the victim's record loses its last bytes
        data = pathlib.Path(path).read_bytes()
        ends = [0]
        for record in tf.data.TFRecordDataset(path):
            ends.append(ends[-1] + 16 + len(record.numpy()))
        pathlib.Path(path).write_bytes(data[:ends[index + 1] - 5])
    config = evaluation.EvalConfig(eval_data=pattern, model_dir=str(trained_run),
                                   output_dir=str(tmp_path / "eval"), verbose=0)
    evaluation.validate(config)  # passes: first records only
    with pytest.raises(evaluation.ConfigError) as e:
        evaluation.evaluate(config)
    message = str(e.value)
    assert message.startswith(f"--eval_data={pattern}: record {index} of {path}"), message
    words = {"part_id_255": f"(image id {victim!r}): parts/fine holds the part id 255",
             "jpeg_garbage": f"(image id {victim!r}): ",
             "truncated_file": "the file is truncated or corrupt there"}[breakage]
    assert words in message, message
    assert not (tmp_path / "eval" / "metrics.json").exists()


@pytest.mark.slow
def test_eval_py_exits_2_naming_the_bad_record(tfrecords, trained_run, tmp_path):
    victim = _second_record_id(tfrecords["val"])
    pattern, where = _rewrite_records(tfrecords["val"], tmp_path / "data", _bad_parts(victim))
    res = _eval(f"--model_dir={trained_run}", f"--eval_data={pattern}",
                f"--output_dir={tmp_path / 'eval'}")
    assert res.returncode == 2, res.stderr[-3000:]
    path, index = where[victim]
    assert f"eval.py: error: --eval_data={pattern}: record {index} of {path}" in res.stderr
    assert "Traceback" not in res.stderr


# === --init=run: start from another run's network ===
def test_init_run_starts_from_the_source_network(tfrecords, trained_run, tmp_path):
    source, _ = train_lib.load_network(str(trained_run), "last")
    config = _config(tfrecords, tmp_path / "warm", init="run",
                     init_weights=str(trained_run), method="supervised", steps=1)
    trainer = train_lib.build_trainer(config, train_lib.validate(config)[0])
    for a, b in zip(source.get_weights(), trainer.network.get_weights()):
        np.testing.assert_array_equal(a, b)
    # and a whole run from it trains
    train_lib.run_training(config)
    assert os.path.exists(tmp_path / "warm" / "DONE")


@pytest.mark.parametrize("override, words", [
    ({"init_weights": None}, "--init=run needs --init_weights"),
    ({"init_weights": "/nonexistent/run"}, "--init_weights"),
    ({"parts": "head"}, "--parts=all4"),
    ({"width_multiplier": 0.125}, "--width_multiplier=0.0625"),
])
def test_init_run_refuses_a_missing_or_different_source(tfrecords, trained_run, tmp_path,
                                                        override, words):
    kw = dict(init="run", init_weights=str(trained_run))
    kw.update(override)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        train_lib.validate(_config(tfrecords, tmp_path / "x", **kw))
