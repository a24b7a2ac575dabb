"""Multi-worker training: two worker processes on 127.0.0.1 with TF_CONFIG.

1. The engine: two workers (MultiWorkerMirroredStrategy, one CPU replica each) train a
   CosegTrainer built by `train_lib.build_trainer` for a few coseg steps on a fixed
   numpy dataset of global batches; a single process with MirroredStrategy over 2
   logical CPUs trains on the same global batches. Each replica gets the same slice
   of each global batch in both (tf.data's DATA auto-sharding gives worker i the i-th
   slice; MirroredStrategy gives replica i the i-th slice), and the coseg loss mines
   targets per replica, so the weights and losses must agree (allclose). As a check
   that this comparison can fail, one device training on the whole global batch
   (mining across both slices) must NOT agree.
2. The program: `train.py --strategy=multi_worker` on two workers over synthetic
   TFRecords. The chief writes the whole run directory; the other worker, given a
   model_dir of its own, writes nothing at all.

This file is also the worker program of part 1: `python test_multi_worker.py engine
OUT.npz` (with TF_CONFIG: a worker; without: the single-process references).
"""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_synthetic_tfrecords

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
ENV.pop("TF_CONFIG", None)

STEPS = 3
CROP = 33
B_F, B_U = 1, 2  # per replica
REPLICAS = 2


# === The worker / reference program (run as a script) ===

def _global_batches(steps=STEPS, replicas=REPLICAS):
    """Numpy arrays of `steps` global batches, the same in every process (fixed seed)."""
    rng = np.random.default_rng(7)
    n_f, n_u = steps * B_F * replicas, steps * B_U * replicas

    def regions(n):
        r = np.zeros((n, CROP, CROP, 1), np.float32)
        for i in range(n):
            y0, x0 = rng.integers(0, 12, 2)
            r[i, y0:y0 + 20, x0:x0 + 16] = 1
        return r

    region_f = regions(n_f)
    labels = rng.integers(0, 6, (n_f, CROP, CROP)).astype(np.int32)
    labels[region_f[..., 0] == 0] = 0
    labeled = {"image": rng.uniform(0, 255, (n_f, CROP, CROP, 3)).astype(np.float32),
               "human_region": region_f, "labels": labels}
    unlabeled = {"image": rng.uniform(0, 255, (n_u, CROP, CROP, 3)).astype(np.float32),
                 "human_region": regions(n_u)}
    return labeled, unlabeled


def _engine_run(strategy, label):
    import tensorflow as tf

    from coseg_tf import train_lib
    from pipelines import schema

    labeled, unlabeled = _global_batches()
    ds = tf.data.Dataset.zip({
        "labeled": tf.data.Dataset.from_tensor_slices(labeled).batch(B_F * REPLICAS),
        "unlabeled": tf.data.Dataset.from_tensor_slices(unlabeled).batch(B_U * REPLICAS)})
    config = train_lib.TrainConfig(
        train_data="-", model_dir="-", init="random", width_multiplier=0.0625,
        dropout_rate=0.0, method="coseg", alpha=0.5, beta=0.5, learning_rate=0.01,
        crop_size=CROP, steps=STEPS, seed=3)
    with strategy.scope():
        trainer = train_lib.build_trainer(config, schema.get_scheme("all4"))
    initial = [v.numpy() for v in trainer.network.trainable_variables]
    history = trainer.fit(ds, epochs=1, steps_per_epoch=STEPS, verbose=0).history
    weights = [v.numpy() for v in trainer.network.trainable_variables]
    return {f"{label}/w{i}": w for i, w in enumerate(weights)}, {
        "replicas": strategy.num_replicas_in_sync,
        "losses": {k: float(np.mean(v[-1])) for k, v in history.items()},
        "max_weight_change": max(float(np.abs(a - b).max()) for a, b in zip(weights, initial)),
    }


def _engine_main(out):
    """With TF_CONFIG: one worker. Without: MirroredStrategy over 2 logical CPUs, then
    one device on the whole global batch."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from coseg_tf import distribute

    arrays, report = {}, {}
    if "TF_CONFIG" in os.environ:
        strategy = distribute.make_strategy("multi_worker")
        a, report["worker"] = _engine_run(strategy, "worker")
        arrays.update(a)
        report["chief"] = distribute.is_chief(strategy)
    else:
        import tensorflow as tf

        strategy = distribute.make_strategy("mirrored", num_cpu_devices=REPLICAS)
        a, report["mirrored"] = _engine_run(strategy, "mirrored")
        arrays.update(a)
        a, report["one_device"] = _engine_run(tf.distribute.get_strategy(), "one_device")
        arrays.update(a)
    np.savez(out, **arrays)
    print(json.dumps(report))


# === Helpers of the tests ===

def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _tf_configs(n):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(n)]
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
            for i in range(n)]


def _start(args, tf_config=None):
    env = dict(ENV)
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    return subprocess.Popen([sys.executable, *args], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish_all(procs, timeout=600):
    """Waits for every process; kills the others when one fails (a lone worker would
    wait for its peer forever)."""
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            results.append((proc.returncode, out, err))
            if proc.returncode != 0:
                break
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for code, out, err in results:
        assert code == 0, err[-4000:]
    return results


# === 1. The engine ===

@pytest.mark.slow
def test_two_workers_match_one_process_on_the_same_global_batch(tmp_path):
    script = str(pathlib.Path(__file__).resolve())
    outs = [tmp_path / f"{name}.npz" for name in ("worker0", "worker1", "reference")]
    configs = _tf_configs(2)
    procs = [_start([script, "engine", str(outs[0])], configs[0]),
             _start([script, "engine", str(outs[1])], configs[1]),
             _start([script, "engine", str(outs[2])])]
    reports = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in _finish_all(procs)]
    w0, w1, ref = (np.load(p) for p in outs)
    n = len([k for k in ref.files if k.startswith("mirrored/")])
    worker = [[w[f"worker/w{i}"] for i in range(n)] for w in (w0, w1)]
    mirrored = [ref[f"mirrored/w{i}"] for i in range(n)]
    one_device = [ref[f"one_device/w{i}"] for i in range(n)]

    assert [r["worker"]["replicas"] for r in reports[:2]] == [2, 2]
    assert [r["chief"] for r in reports[:2]] == [True, False]
    assert reports[2]["mirrored"]["replicas"] == 2
    # The steps moved the weights by far more than the tolerance below.
    assert reports[2]["mirrored"]["max_weight_change"] > 1e-2
    for a, b in zip(worker[0], worker[1]):  # the workers are in sync
        np.testing.assert_array_equal(a, b)
    for a, b in zip(worker[0], mirrored):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for name in ("loss", "humanparts", "human", "coseg"):
        for report in reports[:2]:  # every worker logs the mean over all replicas
            assert report["worker"]["losses"][name] == pytest.approx(
                reports[2]["mirrored"]["losses"][name], rel=1e-5), name
    # Mining per replica matters: the whole batch on one device trains differently.
    assert max(float(np.abs(a - b).max()) for a, b in zip(mirrored, one_device)) > 1e-4


# === 2. train.py on two workers ===

@pytest.fixture(scope="module")
def tfrecords(tmp_path_factory):
    return make_synthetic_tfrecords(tmp_path_factory.mktemp("synthetic"),
                                    num_images=12, image_size=80, seed=1,
                                    val_fraction=0.25, num_shards=2, voc_boxes=False)


@pytest.mark.slow
def test_train_py_on_two_workers_only_the_chief_writes(tfrecords, tmp_path):
    chief_dir, other_dir = tmp_path / "chief_run", tmp_path / "worker1_run"
    common = ["--strategy=multi_worker", "--init=random", "--width_multiplier=0.0625",
              "--crop_size=49", "--batch_labeled=1", "--batch_unlabeled=2",
              "--num_labeled=4", "--method=coseg", "--steps=4", "--checkpoint_every=2",
              "--val_steps=1", "--verbose=2", f"--train_data={tfrecords['train']}",
              f"--val_data={tfrecords['val']}"]
    configs = _tf_configs(2)
    train = str(REPO / "train.py")
    procs = [_start([train, *common, f"--model_dir={chief_dir}"], configs[0]),
             # Another model_dir, to see what this worker writes: nothing. (In a real
             # cluster every worker gets the same --model_dir, e.g. on gs://.)
             _start([train, *common, f"--model_dir={other_dir}"], configs[1])]
    (_, chief_out, chief_err), (_, other_out, other_err) = _finish_all(procs)
    chief_log, other_log = chief_out + chief_err, other_out + other_err

    assert not other_dir.exists(), sorted(p.name for p in other_dir.rglob("*"))
    files = sorted(str(p.relative_to(chief_dir)) for p in chief_dir.rglob("*") if p.is_file()
                   and not str(p.relative_to(chief_dir)).startswith("logs"))
    assert files == ["DONE", "backup/state-000002.weights.h5", "backup/training_metadata.json",
                     "checkpoints/best.weights.h5", "checkpoints/last.weights.h5",
                     "config.json", "history.csv", "labeled_ids.txt", "model.json",
                     "starts.jsonl"]
    assert (chief_dir / "logs").is_dir()
    assert (chief_dir / "DONE").read_text().split() == ["steps", "4"]
    meta = json.loads((chief_dir / "backup" / "training_metadata.json").read_text())
    assert {k: meta[k] for k in ("epoch", "step", "weights", "data_position", "replicas",
                                 "monitor")} == {
        "epoch": 2, "step": 4, "weights": "state-000002.weights.h5", "data_position": 4,
        "replicas": 2, "monitor": "val_loss"}
    rows = (chief_dir / "history.csv").read_text().splitlines()
    assert len(rows) == 3 and "val_loss" in rows[0]
    # Both workers logged the same global losses (means over all replicas).
    chief_epochs = [line for line in chief_log.splitlines() if " - loss: " in line]
    other_epochs = [line for line in other_log.splitlines() if " - loss: " in line]
    assert len(chief_epochs) == 2
    metrics = lambda line: re.findall(r"(\w+): ([-+.\de]+)", line)  # noqa: E731
    assert [metrics(line) for line in chief_epochs] == [metrics(line) for line in other_epochs]
    assert all(dict(metrics(line))["loss"] for line in chief_epochs)

    from coseg_tf import train_lib
    network, info = train_lib.load_network(str(chief_dir), "last")
    assert info["num_classes"] == 6
    assert all(np.isfinite(v.numpy()).all() for v in network.trainable_variables)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "engine":
        sys.exit(f"usage: {sys.argv[0]} engine OUT.npz")
    _engine_main(sys.argv[2])
