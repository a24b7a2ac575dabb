"""train.py end to end on synthetic TFRecords: losses fall, runs resume, bad flags refused."""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from conftest import make_synthetic_tfrecords

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))

# Small CPU setting: tiny width, small crops, 2 replicas of 1 + 3 images.
SMALL = ["--init=random", "--width_multiplier=0.0625", "--crop_size=65",
         "--batch_labeled=1", "--batch_unlabeled=3", "--num_labeled=6",
         "--num_cpu_devices=2", "--parts=all4", "--verbose=2", "--val_steps=2"]


@pytest.fixture(scope="module")
def tfrecords(tmp_path_factory):
    return make_synthetic_tfrecords(tmp_path_factory.mktemp("synthetic"),
                                    num_images=24, image_size=96, seed=0,
                                    val_fraction=0.25, num_shards=1, voc_boxes=True)


def _train(args, **kw):
    return subprocess.run([sys.executable, str(REPO / "train.py")] + args,
                          capture_output=True, text=True, env=ENV, timeout=900, **kw)


def _history(model_dir):
    with open(os.path.join(model_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["supervised", "coseg", "gmp", "em_adapt",
                                    "coseg_fixmatch"])
def test_short_run_lowers_the_loss(tfrecords, tmp_path, method):
    model_dir = str(tmp_path / method)
    proc = _train(SMALL + [f"--train_data={tfrecords['train']}",
                           f"--val_data={tfrecords['val']}", f"--model_dir={model_dir}",
                           f"--method={method}", "--steps=24", "--checkpoint_every=8",
                           "--learning_rate=0.01", "--diagnostics"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _history(model_dir)
    assert len(rows) == 3
    # coseg's own term may rise while its mined targets change; the image-label
    # baselines trade L_humanparts against their unlabeled term early on: their
    # total, which they minimise, falls.
    key = "loss" if method in ("gmp", "em_adapt") else "humanparts"
    first, last = float(rows[0][key]), float(rows[-1][key])
    assert last < first, [(r["humanparts"], r["loss"]) for r in rows]
    for name in ("config.json", "labeled_ids.txt", "model.json",
                 "checkpoints/last.weights.h5", "checkpoints/best.weights.h5"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    labeled = open(os.path.join(model_dir, "labeled_ids.txt")).read().split()
    assert len(labeled) == 6
    if method in ("coseg", "coseg_fixmatch"):
        assert "mining_precision" in rows[0] and "coseg" in rows[0]
    if method == "coseg_fixmatch":  # its strong views came through the pipeline
        assert "fixmatch" in rows[0] and "pseudo_confident" in rows[0]
    # Image-level labels: recorded (and read) only by the image-label methods.
    tsv = os.path.join(model_dir, "image_labels.tsv")
    if method in ("gmp", "em_adapt"):
        assert method in rows[0]
        lines = [ln.split("\t") for ln in open(tsv).read().splitlines()
                 if not ln.startswith("#")]
        from pipelines import streams
        expected = streams.image_level_labels(tfrecords["train"], scheme="all4")
        assert sorted(i for i, _ in lines) == sorted(expected)
        names = ["background", "head", "body", "hand", "leg", "other"]
        for image_id, classes in lines:
            assert classes.split(",") == [n for n, on in zip(names, expected[image_id]) if on]
    else:
        assert not os.path.exists(tsv)
        assert "gmp" not in rows[0] and "em_adapt" not in rows[0]
    # The final checkpoint loads.
    from coseg_tf import train_lib
    network, info = train_lib.load_network(model_dir, "last")
    assert info["num_classes"] == 6 and network.get_layer("fc8") is not None


def _start_train(args):
    """train.py in its own session, SIGINT at its default (a job started in the
    background inherits it ignored)."""
    return subprocess.Popen([sys.executable, str(REPO / "train.py")] + args, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _backed_up_intervals(proc, model_dir, at_least):
    """Waits (up to 10 minutes) until the run's backup holds `at_least` intervals or the
    process ends; returns the intervals it holds."""
    meta = os.path.join(model_dir, "backup", "training_metadata.json")
    deadline = time.time() + 600
    reached = 0
    while time.time() < deadline and proc.poll() is None and reached < at_least:
        try:
            reached = json.load(open(meta))["epoch"]
        except (OSError, ValueError, KeyError):  # not there yet, or being replaced
            reached = 0
        time.sleep(0.2)
    return reached


@pytest.mark.slow
def test_killed_run_resumes_at_the_step_it_reached(tfrecords, tmp_path):
    model_dir = str(tmp_path / "resume")
    args = SMALL + [f"--train_data={tfrecords['train']}", f"--model_dir={model_dir}",
                    "--method=coseg", "--steps=40", "--checkpoint_every=5"]
    proc = _start_train(args)
    try:
        reached = _backed_up_intervals(proc, model_dir, 2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    assert reached >= 2
    assert not os.path.exists(os.path.join(model_dir, "DONE"))

    done = _train(args)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    # Keras counts epochs from 1: the restarted run starts after the backed-up ones.
    assert f"Epoch {reached + 1}/8" in out and "Epoch 1/8" not in out, out[-3000:]
    assert f"resuming at step {reached * 5} of 40" in out, out[-3000:]
    assert open(os.path.join(model_dir, "DONE")).read().split() == ["steps", "40"]
    from coseg_tf import train_lib
    train_lib.load_network(model_dir, "last")


@pytest.mark.slow
def test_interrupted_run_says_how_to_resume(tfrecords, tmp_path):
    model_dir = str(tmp_path / "interrupted")
    args = SMALL + [f"--train_data={tfrecords['train']}", f"--model_dir={model_dir}",
                    "--method=supervised", "--steps=200", "--checkpoint_every=5"]
    proc = _start_train(args)
    try:
        assert _backed_up_intervals(proc, model_dir, 1) >= 1, "no interval was backed up"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert f"train.py: interrupted. The same command resumes {model_dir}" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]


@pytest.mark.parametrize("flag, message", [
    ("--parts=arms", "parts"),
    ("--num_labeled=0", "num_labeled"),
    ("--num_labeled=100000", "num_labeled"),
    ("--init=vgg16", "init_weights"),
    ("--jit_compile", "--jit_compile needs a single replica"),  # SMALL has 2 replicas
    ("--mixed_precision=half", "mixed_precision"),
    ("--fc6_impl=cudnn", "fc6_impl"),
])
def test_bad_flags_are_refused_before_any_work(tfrecords, tmp_path, flag, message):
    model_dir = tmp_path / "run"
    proc = _train(SMALL + [f"--train_data={tfrecords['train']}", f"--model_dir={model_dir}",
                           "--steps=2", flag])
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not model_dir.exists()


def test_missing_train_data_is_refused(tmp_path):
    proc = _train(SMALL + [f"--train_data={tmp_path}/nothing-*.tfrecord",
                           f"--model_dir={tmp_path / 'run'}", "--steps=2"])
    assert proc.returncode != 0
    assert "--train_data" in proc.stderr and "nothing-*" in proc.stderr
