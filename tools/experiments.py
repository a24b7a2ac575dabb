"""Shared pieces of the experiment tools (tools/demo.py, tools/sweep.py).

Data preparation (synthetic source data + TFRecords, redone only when its settings
change), recipe files, and training runs that are skipped once finished, so that an
interrupted demo or sweep continues where it stopped.
"""

from __future__ import annotations

import json
import os
import shlex
import time

# The CPU recipes of the demo and the sweep run ~1.5x faster with TensorFlow's oneDNN
# kernels, which TF 2.21 leaves off on CPUs without AVX-512 (docs/PERFORMANCE.md,
# "Against PyTorch"). TensorFlow reads this once, when imported: tools/demo.py and
# tools/sweep.py import this module first. An explicit TF_ENABLE_ONEDNN_OPTS=0 wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find_recipe(path):
    """`path`, or the same path inside the repository (recipes/... from any folder)."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    return os.path.join(REPO, path)


def read_flagfile(path):
    """{name: value string} of a recipe file (`--name=value` lines, # comments)."""
    from pipelines import textfiles

    values = {}
    for line in textfiles.read_lines(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.lstrip("-").partition("=")
        values[name] = value
    return values


def log(msg, tag="demo"):
    print(f"[{tag} {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def prepare_data(data_dir, *, num_images, image_size, seed):
    """Synthetic source data and its TFRecords; returns the train and val patterns."""
    from tools import make_synthetic, make_tfrecords

    src = os.path.join(data_dir, "source")
    tfr = os.path.join(data_dir, "tfrecords")
    settings = {"num_images": num_images, "image_size": image_size, "seed": seed,
                "difficulty": make_synthetic.DEFAULT_DIFFICULTY}
    stamp = os.path.join(data_dir, "demo_data.json")
    if os.path.exists(stamp) and json.load(open(stamp)) == settings:
        log(f"data: {data_dir} is up to date")
    else:
        log(f"data: generating {num_images} synthetic images ({image_size} px) in {src}")
        make_synthetic.generate(output_dir=src, num_images=num_images,
                                image_size=image_size, seed=seed,
                                difficulty=settings["difficulty"], val_fraction=0.3)
        for split in ("train", "val"):
            log(f"data: converting {split} to TFRecords in {tfr}")
            make_tfrecords.convert(
                pascal_part_dir=os.path.join(src, "Annotations_Part"),
                images_dir=os.path.join(src, "JPEGImages"),
                voc_annotations_dir=os.path.join(src, "Annotations"),
                split_list=os.path.join(src, "ImageSets", f"{split}.txt"),
                split_name=split, output_dir=tfr, num_shards=2, on_error="fail")
        with open(stamp, "w") as f:
            json.dump(settings, f)
    return os.path.join(tfr, "train-*.tfrecord"), os.path.join(tfr, "val-*.tfrecord")


def train_run(model_dir, recipe, overrides, train_data, val_data, steps=None, *,
              recipe_path="recipes/cpu_small.flags"):
    """Trains one run unless it is finished (its DONE file); logs the train.py command."""
    from coseg_tf import run_dir, train_lib

    if os.path.exists(run_dir.path(model_dir, run_dir.DONE_FILE)):
        log(f"train: {model_dir} is finished already")
        return
    fields = train_lib.TrainConfig.__dataclass_fields__
    values = {}
    for name, text in recipe.items():
        if name not in fields:
            raise ValueError(f"recipe flag --{name} is not a training flag")
        values[name] = _convert(fields[name], text)
    values.update(overrides)
    if steps:
        values["steps"] = steps
    config = train_lib.TrainConfig(train_data=train_data, val_data=val_data,
                                   model_dir=model_dir, **values)
    cmd = ["python", "train.py", f"--flagfile={recipe_path}",
           f"--train_data={train_data}", f"--val_data={val_data}",
           f"--model_dir={model_dir}"] + [f"--{k}={v}" for k, v in overrides.items()]
    if steps:
        cmd.append(f"--steps={steps}")
    log("train: " + " ".join(shlex.quote(c) for c in cmd))
    start = time.time()
    train_lib.run_training(config)
    log(f"train: {model_dir} done in {time.time() - start:.0f} s")


def _convert(field, text):
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if "bool" in kind:
        return text.lower() in ("1", "true", "")
    if "int" in kind:
        return int(text)
    if "float" in kind:
        return float(text)
    return text
