"""eval.py from the command line: refusals before any work, and one real run (slow)."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

import pipeline_helpers as ph
from test_evaluation import make_run_dir, write_eval_records_dir, write_model_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_eval(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, os.path.join(REPO, "eval.py"), *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process, timeout=300):
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_eval(*args, timeout=300):
    return finish(start_eval(*args), timeout)


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """An all4 model.json with a checkpoint file that is never read (refusals only)."""
    root = tmp_path_factory.mktemp("cli")
    data = write_eval_records_dir(root)
    model_dir = str(root / "run")
    write_model_json(model_dir, "all4")
    os.makedirs(os.path.join(model_dir, "checkpoints"))
    with open(os.path.join(model_dir, "checkpoints", "last.weights.h5"), "wb") as f:
        f.write(b"not read")
    return root, model_dir, data


def assert_refused(result, *fragments):
    assert result.returncode != 0, result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert not result.stdout.strip(), result.stdout


def test_flag_errors_at_parse_time(fake_run):
    _, model_dir, data = fake_run
    assert_refused(run_eval(f"--model_dir={model_dir}"), "--eval_data")
    assert_refused(run_eval(f"--model_dir={model_dir}", f"--eval_data={data}",
                            "--scales=1,-0.5"), "--scales", "'-0.5' is not positive")
    assert_refused(run_eval(f"--model_dir={model_dir}", f"--eval_data={data}",
                            "--parts=arms"), "--parts")


def test_parts_disagreeing_with_the_checkpoint_is_refused(fake_run):
    _, model_dir, data = fake_run
    result = run_eval(f"--model_dir={model_dir}", "--parts=head", f"--eval_data={data}")
    assert result.returncode == 2, result.stderr
    assert_refused(result, "eval.py: error: --parts=head has 3 classes",
                   "the checkpoint of", "parts=all4", "has 6 classes")


@pytest.mark.slow  # five TensorFlow start-ups; evaluation's own tests cover the messages
def test_refusals_before_work(fake_run, tmp_path):
    root, model_dir, data = fake_run
    other = ph.write_tfrecord(tmp_path / "other.tfrecord", [
        tf.train.Example(features=tf.train.Features(feature={
            "x": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}))
        .SerializeToString()])
    cases = [
        ((f"--model_dir={model_dir}", f"--eval_data={tmp_path}/none-*.tfrecord"),
         ("--eval_data=", "no file matches")),
        ((f"--model_dir={model_dir}", f"--eval_data={other}"),
         ("--eval_data=", "missing feature keys")),
        ((f"--model_dir={tmp_path}/no_run", f"--eval_data={data}"),
         ("--model_dir", "model.json not found")),
        ((f"--model_dir={model_dir}", "--checkpoint=best", f"--eval_data={data}"),
         ("--checkpoint=best", "best.weights.h5 not found")),
        ((f"--eval_data={data}",), ("exactly one of --model_dir",)),
    ]
    # Started together: each process spends its seconds importing TensorFlow.
    processes = [start_eval(*args) for args, _ in cases]
    for process, (args, fragments) in zip(processes, cases):
        result = finish(process)
        assert result.returncode == 2, (args, result.stderr)
        assert_refused(result, "eval.py: error:", *fragments)
    # Nothing was written into the run directory.
    assert sorted(os.listdir(model_dir)) == ["checkpoints", "model.json"]


@pytest.mark.slow
def test_cli_evaluates_a_run_and_prints_the_table2_row(tmp_path):
    data = write_eval_records_dir(tmp_path)
    model_dir = str(tmp_path / "run")
    make_run_dir(model_dir, "all4")
    result = run_eval(f"--model_dir={model_dir}", f"--eval_data={data}", "--overlays=1",
                      "--flip", "--scales=1,0.5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == [
        "head", "body", "hand", "leg", "mean"])
    assert len(lines[header + 1].split()) == 5
    with open(os.path.join(model_dir, "eval_val", "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["num_images"] == 3
    assert metrics["config"]["flip"] is True and metrics["scales"] == [1.0, 0.5]
    assert lines[header + 1].strip() == metrics["table_row"].strip()
    assert "images/s" in result.stderr  # the progress bar
    assert os.path.exists(metrics["overlays"][0])
