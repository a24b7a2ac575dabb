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

# The demo's setting, shared by the sweep (docs/RESULTS.md): the synthetic data, the
# training recipe, and the schedule. Every run of a labeled set starts from one
# supervised warm-up of WARMUP_STEPS on it (the paper's "better representation before
# L_coseg"; the baseline gets the same), then trains the recipe's --steps of its method.
DEMO_RECIPE = "recipes/cpu_small.flags"
DEMO_NUM_IMAGES = 300
DEMO_IMAGE_SIZE = 240
WARMUP_STEPS = 600
# The demo's ceiling (c), all labels, trains this many steps after its warm-up: what it
# takes to learn the parts here (docs/PERFORMANCE.md, "Time to accuracy").
CEILING_STEPS = 9600


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
                "difficulty": make_synthetic.DEFAULT_DIFFICULTY,
                "generator_version": make_synthetic.GENERATOR_VERSION}
    stamp = os.path.join(data_dir, "demo_data.json")
    if os.path.exists(stamp) and json.load(open(stamp)) == settings:
        log(f"data: {data_dir} is up to date")
    else:
        log(f"data: generating {num_images} synthetic images ({image_size} px) in {src}")
        workers = min(4, os.cpu_count() or 1)  # the output does not depend on it
        summary = make_synthetic.generate(output_dir=src, num_images=num_images,
                                          image_size=image_size, seed=seed,
                                          difficulty=settings["difficulty"],
                                          val_fraction=0.3, num_workers=workers)
        log("data: " + make_synthetic.format_person_statistics(summary["person_statistics"]))
        for split in ("train", "val"):
            log(f"data: converting {split} to TFRecords in {tfr}")
            make_tfrecords.convert(
                pascal_part_dir=os.path.join(src, "Annotations_Part"),
                images_dir=os.path.join(src, "JPEGImages"),
                voc_annotations_dir=os.path.join(src, "Annotations"),
                split_list=os.path.join(src, "ImageSets", f"{split}.txt"),
                split_name=split, output_dir=tfr, num_shards=2, num_workers=workers,
                on_error="fail")
        with open(stamp, "w") as f:
            json.dump(settings, f)
    return os.path.join(tfr, "train-*.tfrecord"), os.path.join(tfr, "val-*.tfrecord")


class SettingError(ValueError):
    """A run folder or kept result belongs to another setting than the one asked for."""


def run_config(model_dir, recipe, overrides, train_data, val_data, steps=None):
    """The TrainConfig of a run: the recipe's flags, then `overrides`, then `steps`.

    Raises:
      ValueError: a recipe flag that is not a training flag.
    """
    from coseg_tf import train_lib

    fields = train_lib.TrainConfig.__dataclass_fields__
    values = {}
    for name, text in recipe.items():
        if name not in fields:
            raise ValueError(f"recipe flag --{name} is not a training flag")
        values[name] = _convert(fields[name], text)
    values.update(overrides)
    if steps:
        values["steps"] = steps
    return train_lib.TrainConfig(train_data=train_data, val_data=val_data,
                                 model_dir=model_dir, **values)


# Flags that hold where files are, not what the experiment is: a finished run or a kept
# result moved to another folder or machine still counts as the same experiment.
_PATH_FLAGS = ("model_dir", "train_data", "val_data", "unlabeled_data", "init_weights")


def setting_changes(recorded, config):
    """[(flag, recorded value, new value)] of the flags that make `config` another
    experiment than the `recorded` config.json: every flag but the ones a restart may
    change (`run_dir.RESUME_MAY_CHANGE`) and the paths."""
    from coseg_tf import run_dir

    return [c for c in run_dir.changed_flags(recorded, config)
            if c[0] not in run_dir.RESUME_MAY_CHANGE and c[0] not in _PATH_FLAGS]


def train_run(model_dir, recipe, overrides, train_data, val_data, steps=None, *,
              recipe_path="recipes/cpu_small.flags"):
    """Trains one run unless it is finished (its DONE file); logs the train.py command.

    Raises:
      SettingError: `model_dir` holds a finished run of other flags (e.g. an older
        recipe): it is neither reused nor overwritten.
    """
    from coseg_tf import run_dir, train_lib

    config = run_config(model_dir, recipe, overrides, train_data, val_data, steps)
    if os.path.exists(run_dir.path(model_dir, run_dir.DONE_FILE)):
        changes = setting_changes(run_dir.read_config(model_dir) or {}, config)
        if changes:
            raise SettingError(
                f"{model_dir} holds a finished run of other flags ({run_dir.format_changes(changes)}"
                f"), e.g. of an older recipe: move it away or choose another run folder; "
                "it is not reused or overwritten")
        log(f"train: {model_dir} is finished already")
        return
    cmd = ["python", "train.py", f"--flagfile={recipe_path}",
           f"--train_data={train_data}", f"--val_data={val_data}",
           f"--model_dir={model_dir}"] + [f"--{k}={v}" for k, v in overrides.items()]
    if steps:
        cmd.append(f"--steps={steps}")
    log("train: " + " ".join(shlex.quote(c) for c in cmd))
    start = time.time()
    train_lib.run_training(config)
    log(f"train: {model_dir} done in {time.time() - start:.0f} s")


def warmup_plan(run_root, overrides, warmup_steps):
    """(warm-up directory or None, its overrides, the run's overrides) of a run.

    `overrides` may name the warm-up run under "warmup": that run (supervised, the same
    parts and labeled set) lives in run_root/<warm-up name>, and the run starts from its
    network (--init=run).
    """
    overrides = dict(overrides)
    warm = overrides.pop("warmup", None)
    if warm is None or warmup_steps <= 0:
        return None, None, overrides
    warm_dir = os.path.join(run_root, warm)
    warm_overrides = {"method": "supervised", "num_labeled": overrides["num_labeled"],
                      "labeled_seed": overrides.get("labeled_seed", 0)}
    if "parts" in overrides:
        warm_overrides["parts"] = overrides["parts"]
    overrides.update(init="run", init_weights=warm_dir)
    return warm_dir, warm_overrides, overrides


def train_with_warmup(run_root, name, recipe, overrides, train_data, val_data, *,
                      warmup_steps, steps=None, recipe_path=DEMO_RECIPE):
    """Trains run `name` under `run_root`, first its supervised warm-up if it has one.

    `overrides` may name the warm-up run under "warmup" (sweep.grid does): that run
    (supervised, the same parts and labeled set, `warmup_steps` steps) is trained once
    into run_root/<warm-up name> and shared by every run that names it; the run then
    starts from its network (--init=run). Returns the run's directory.
    """
    warm_dir, warm_overrides, overrides = warmup_plan(run_root, overrides, warmup_steps)
    if warm_dir is not None:
        train_run(warm_dir, recipe, warm_overrides, train_data, val_data, warmup_steps,
                  recipe_path=recipe_path)
    model_dir = os.path.join(run_root, name)
    train_run(model_dir, recipe, overrides, train_data, val_data, steps,
              recipe_path=recipe_path)
    return model_dir


def _convert(field, text):
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if "bool" in kind:
        return text.lower() in ("1", "true", "")
    if "int" in kind:
        return int(text)
    if "float" in kind:
        return float(text)
    return text


def gradient_scale(model_dir, train_data, *, labeled_ids, batch_labeled, batch_unlabeled,
                   crop_size, min_scale=0.75, max_scale=1.25, batches=8, seed=0):
    """How large the unlabeled terms' gradients are beside L_humanparts', on a network.

    Loads the last checkpoint of the run `model_dir`, draws `batches` training batches
    of the coseg method (labeled crops of `labeled_ids` + unlabeled crops of every
    training image) and returns the mean over batches of
    ||grad L_coseg|| / ||grad L_humanparts|| and ||grad L_human|| / ||grad L_humanparts||
    (Euclidean norms over all trainable weights, weights 1): the factor a weight beta or
    alpha multiplies. With beta = 0.001 L_coseg's gradient is 0.001 times the first.

    Returns:
      {"coseg": float, "human": float, "batches": int}.
    """
    import numpy as np
    import tensorflow as tf

    from coseg_tf import objectives
    from coseg_tf import run_dir
    from coseg_tf import trainer as trainer_lib
    from pipelines import streams

    network, info = run_dir.load_network(model_dir, "last")
    objective = objectives.build("coseg", alpha=1.0, beta=1.0)
    trainer = trainer_lib.CosegTrainer(network, num_classes=info["num_classes"],
                                       objective=objective)
    ds = streams.train_dataset(train_data, needs=objective.needs, scheme=info["parts"],
                               labeled_ids=labeled_ids, batch_labeled=batch_labeled,
                               batch_unlabeled=batch_unlabeled, crop_size=crop_size,
                               min_scale=min_scale, max_scale=max_scale, seed=seed)
    variables = network.trainable_variables

    def norm(grads):
        return float(tf.linalg.global_norm([g for g in grads if g is not None]))

    ratios = {"coseg": [], "human": []}
    for element in ds.take(batches):
        element = {k: {n: t for n, t in v.items() if n != "id"} for k, v in element.items()}
        with tf.GradientTape(persistent=True) as tape:
            result, _ = trainer.compute_losses(element, training=True)
        base = norm(tape.gradient(result["humanparts"], variables))
        for term in ratios:
            ratios[term].append(norm(tape.gradient(result[term], variables)) / base)
        del tape
    return {"coseg": float(np.mean(ratios["coseg"])), "human": float(np.mean(ratios["human"])),
            "batches": batches}
