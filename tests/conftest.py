"""Shared test fixtures: paths to ../shared, and a quiet TensorFlow."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures" / "pascal_part"


@pytest.fixture(scope="session")
def pascal_part_dir():
    """The real Pascal-Part samples of ../shared/fixtures, or a skip saying why."""
    if not FIXTURES.is_dir():
        pytest.skip(f"real Pascal-Part fixtures not found at {FIXTURES} "
                    "(../shared/fixtures/pascal_part beside the checkout)")
    return FIXTURES


def make_synthetic_tfrecords(root, *, num_images, image_size, seed, num_shards=1,
                             val_fraction=0.25, voc_boxes=False):
    """Synthetic Pascal-Part sources under root/src and their TFRecords under root/tfr.

    Returns {"train": pattern, "val": pattern, "dir": root/tfr}.
    """
    from tools import make_synthetic, make_tfrecords

    root = pathlib.Path(root)
    make_synthetic.generate(output_dir=str(root / "src"), num_images=num_images,
                            image_size=image_size, seed=seed, difficulty=0.5,
                            val_fraction=val_fraction)
    for split in ("train", "val"):
        make_tfrecords.convert(
            pascal_part_dir=str(root / "src" / "Annotations_Part"),
            images_dir=str(root / "src" / "JPEGImages"),
            voc_annotations_dir=str(root / "src" / "Annotations") if voc_boxes else None,
            split_list=str(root / "src" / "ImageSets" / f"{split}.txt"),
            split_name=split, output_dir=str(root / "tfr"), num_shards=num_shards,
            progress=False)
    return {"train": str(root / "tfr" / "train-*"), "val": str(root / "tfr" / "val-*"),
            "dir": root / "tfr"}


class Killed(Exception):
    """Raised by `train_until` where a SIGKILL would stop train.py."""


def train_until(config, intervals):
    """Runs `train_lib.run_training(config)` and 'kills' it right after the backup of
    interval `intervals` is committed (the state a SIGKILL at that moment leaves)."""
    from coseg_tf import train_lib

    backup = train_lib.Backup  # coseg_tf.run_dir.Backup
    original = backup.on_epoch_end

    def commit_then_die(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch + 1 >= intervals:
            raise Killed()

    backup.on_epoch_end = commit_then_die
    try:
        train_lib.run_training(config)
    except Killed:
        pass
    finally:
        backup.on_epoch_end = original


def copy_run(run, tmp_path):
    """A copy of the run directory `run` at tmp_path/run (to break or restart it)."""
    import shutil

    dest = pathlib.Path(tmp_path) / "run"
    shutil.copytree(run, dest)
    return dest


def snapshot(directory):
    """{relative path: bytes} of every file under `directory`: what a step wrote."""
    directory = pathlib.Path(directory)
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}
