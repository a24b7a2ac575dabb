"""Training runs: a plain config in, a trained run directory out.

`train.py` turns its flags into a `TrainConfig` once and calls `run_training`; tests
and tools call `run_training` directly. Nothing here reads absl flags.

A run directory holds (all written through `tf.io.gfile`, so `gs://` works too):

    MODEL_DIR/
      config.json          the resolved configuration (repeat a run from it)
      labeled_ids.txt      the labeled images, one id a line
      model.json           what eval/export need to rebuild the network
      checkpoints/last.weights.h5, checkpoints/best.weights.h5 (by validation loss),
        and with keep_checkpoints checkpoints/epoch-NNNN.weights.h5 at every interval
        (epoch N ends at step N * checkpoint_every)
      backup/              Keras BackupAndRestore state: a restarted run resumes here
      history.csv          one row per checkpoint interval (loss terms, mining precision)
      logs/                TensorBoard
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Optional

import keras
import tensorflow as tf

from coseg_tf import distribute
from coseg_tf import model as model_lib
from coseg_tf import trainer as trainer_lib
from coseg_tf import weights as weights_lib
from pipelines import decode, schema, streams

METHODS = trainer_lib.METHODS


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; field names equal the flag names of train.py."""
    train_data: str
    model_dir: str
    val_data: Optional[str] = None
    parts: str = "all4"
    human_region: str = "boxes"
    num_labeled: int = 10
    labeled_seed: int = 0
    labeled_ids_file: Optional[str] = None
    crop_size: int = 321
    min_scale: float = 0.5
    max_scale: float = 1.5
    batch_labeled: int = 1
    batch_unlabeled: int = 23
    diagnostics: bool = False
    width_multiplier: float = 1.0
    init: str = "vgg16"
    init_weights: Optional[str] = None
    dropout_rate: float = 0.5
    method: str = "coseg"
    alpha: float = 0.001
    beta: float = 0.001
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    fc8_lr_multiplier: float = 10.0
    poly_power: float = 0.9
    steps: int = 6000
    checkpoint_every: int = 100
    keep_checkpoints: bool = False
    val_steps: int = 20
    strategy: str = "mirrored"
    num_cpu_devices: int = 0
    seed: int = 0
    verbose: int = 1


class ConfigError(ValueError):
    """A flag or an input that makes the run impossible; raised before any work."""


def _positive(config, *names):
    for name in names:
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name} must be positive, got {getattr(config, name)}")


def validate(config: TrainConfig):
    """Checks the config and its inputs; returns (scheme, all training ids, labeled ids).

    Raises ConfigError naming the flag at fault, before anything is built or written.
    """
    try:
        scheme = schema.get_scheme(config.parts)
    except ValueError as e:
        raise ConfigError(f"--parts: {e}") from None
    if config.method not in METHODS:
        raise ConfigError(f"--method={config.method!r} is not one of {', '.join(METHODS)}")
    if config.human_region not in ("boxes", "instance"):
        raise ConfigError(f"--human_region={config.human_region!r}: boxes or instance")
    _positive(config, "crop_size", "batch_labeled", "steps", "checkpoint_every",
              "width_multiplier", "learning_rate")
    if config.method == "coseg":
        _positive(config, "batch_unlabeled")
    if not 0 < config.min_scale <= config.max_scale:
        raise ConfigError(f"--min_scale={config.min_scale} and --max_scale="
                          f"{config.max_scale}: need 0 < min_scale <= max_scale")
    if config.init == "vgg16":
        if not config.init_weights:
            raise ConfigError("--init=vgg16 needs --init_weights=PATH (a local "
                              "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5); "
                              "nothing is downloaded. Or pass --init=random.")
        if not tf.io.gfile.exists(config.init_weights):
            raise ConfigError(f"--init_weights: no such file {config.init_weights}")
    elif config.init != "random":
        raise ConfigError(f"--init={config.init!r}: vgg16 or random")
    for flag in ("train_data", "val_data"):
        pattern = getattr(config, flag)
        if pattern is None:
            continue
        try:
            streams.list_files(pattern)
            decode.check_schema(pattern)
        except (ValueError, tf.errors.OpError) as e:
            raise ConfigError(f"--{flag}={pattern}: {e}") from None
    all_ids = streams.read_ids(config.train_data)
    explicit = None
    if config.labeled_ids_file:
        if not tf.io.gfile.exists(config.labeled_ids_file):
            raise ConfigError(f"--labeled_ids_file: no such file {config.labeled_ids_file}")
        with tf.io.gfile.GFile(config.labeled_ids_file) as f:
            explicit = [line.strip() for line in f if line.strip()]
    try:
        labeled_ids = streams.select_labeled_ids(
            all_ids, num_labeled=None if explicit is not None else config.num_labeled,
            seed=config.labeled_seed, labeled_ids=explicit)
    except ValueError as e:
        flag = "labeled_ids_file" if explicit is not None else "num_labeled"
        raise ConfigError(f"--{flag}: {e}") from None
    return scheme, all_ids, labeled_ids


class StopOnNaN(keras.callbacks.Callback):
    """Stops training with a clear error at the first NaN/Inf loss, before any save."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"training loss became {loss} at batch {batch}; stopped before writing "
                "checkpoints. Lower --learning_rate or check the data.")


def _write_text(path, text):
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def build_trainer(config: TrainConfig, scheme, *, steps_per_execution=1):
    """The compiled `CosegTrainer` for `config` (call inside the strategy's scope)."""
    keras.utils.set_random_seed(config.seed)
    network = model_lib.build_deeplab_largefov(
        num_classes=scheme.num_classes, width_multiplier=config.width_multiplier,
        dropout_rate=config.dropout_rate)
    if config.init == "vgg16":
        weights_lib.load_vgg16_weights(network, config.init_weights)
    trainer = trainer_lib.CosegTrainer(
        network, num_classes=scheme.num_classes, method=config.method,
        alpha=config.alpha, beta=config.beta, weight_decay=config.weight_decay,
        fc8_lr_multiplier=config.fc8_lr_multiplier, class_names=scheme.class_names,
        mining_metrics=config.diagnostics)
    schedule = keras.optimizers.schedules.PolynomialDecay(
        config.learning_rate, decay_steps=config.steps, end_learning_rate=0.0,
        power=config.poly_power)
    trainer.compile(optimizer=keras.optimizers.SGD(schedule, momentum=config.momentum),
                    steps_per_execution=steps_per_execution)
    trainer.build()
    trainer.optimizer.build(trainer.network.trainable_variables)
    return trainer


def run_training(config: TrainConfig):
    """Trains as `config` says; returns the Keras History of this (possibly resumed) run."""
    if config.num_cpu_devices > 1 and not tf.config.list_physical_devices("GPU"):
        # Logical devices must exist before TensorFlow runs its first op.
        distribute.split_cpu(config.num_cpu_devices)
    scheme, all_ids, labeled_ids = validate(config)
    strategy = distribute.make_strategy(config.strategy,
                                        num_cpu_devices=config.num_cpu_devices)
    replicas = strategy.num_replicas_in_sync

    gfile = tf.io.gfile
    gfile.makedirs(config.model_dir)
    ckpt_dir = os.path.join(config.model_dir, "checkpoints")
    gfile.makedirs(ckpt_dir)
    _write_text(os.path.join(config.model_dir, "config.json"),
                json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n")
    _write_text(os.path.join(config.model_dir, "labeled_ids.txt"),
                "".join(i + "\n" for i in labeled_ids))
    _write_text(os.path.join(config.model_dir, "model.json"), json.dumps({
        "architecture": "deeplab_largefov", "parts": scheme.name,
        "class_names": list(scheme.class_names), "num_classes": scheme.num_classes,
        "width_multiplier": config.width_multiplier, "human_region": config.human_region,
    }, indent=2) + "\n")

    # Keras "epochs" are checkpoint intervals; BackupAndRestore resumes at the last one.
    steps_per_epoch = min(config.checkpoint_every, config.steps)
    epochs = math.ceil(config.steps / steps_per_epoch)
    backup_dir = os.path.join(config.model_dir, "backup")
    initial_step = _backup_step(backup_dir, steps_per_epoch)

    # Global batches: each replica receives batch_labeled + batch_unlabeled images.
    train_ds = streams.train_dataset(
        config.train_data, method=config.method, scheme=scheme, labeled_ids=labeled_ids,
        batch_labeled=config.batch_labeled * replicas,
        batch_unlabeled=config.batch_unlabeled * replicas, crop_size=config.crop_size,
        min_scale=config.min_scale, max_scale=config.max_scale,
        human_region_mode=config.human_region, diagnostics=config.diagnostics,
        # A resumed run continues with fresh random draws rather than replaying the
        # first steps' data.
        seed=config.seed + initial_step)
    # Image ids are strings: they stay on the host (a GPU replica cannot hold them).
    train_ds = train_ds.map(lambda d: {k: _without_ids(v) for k, v in d.items()})
    val_ds = None
    if config.val_data:
        val_ids = streams.read_ids(config.val_data)
        val_ds = streams.labeled_dataset(
            config.val_data, ids=val_ids, scheme=scheme,
            batch_size=config.batch_labeled * replicas, crop_size=config.crop_size,
            min_scale=1.0, max_scale=1.0, flip=False,
            human_region_mode=config.human_region, seed=config.seed, shuffle_buffer=64)
        val_ds = val_ds.map(lambda d: {"labeled": _without_ids(d)})

    with strategy.scope():
        trainer = build_trainer(config, scheme)

    monitor = "val_loss" if val_ds is not None else "loss"
    callbacks = [
        StopOnNaN(),
        keras.callbacks.BackupAndRestore(backup_dir, save_freq="epoch",
                                         double_checkpoint=True, delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(os.path.join(ckpt_dir, "last.weights.h5"),
                                        save_weights_only=True),
        *([keras.callbacks.ModelCheckpoint(
            os.path.join(ckpt_dir, "epoch-{epoch:04d}.weights.h5"), save_weights_only=True)]
          if config.keep_checkpoints else []),
        keras.callbacks.ModelCheckpoint(os.path.join(ckpt_dir, "best.weights.h5"),
                                        save_weights_only=True, save_best_only=True,
                                        monitor=monitor, mode="min"),
        keras.callbacks.CSVLogger(os.path.join(config.model_dir, "history.csv"),
                                  append=True),
        keras.callbacks.TensorBoard(os.path.join(config.model_dir, "logs"),
                                    update_freq="epoch"),
    ]
    history = trainer.fit(
        train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
        validation_data=val_ds, validation_steps=config.val_steps if val_ds else None,
        callbacks=callbacks, verbose=config.verbose)
    _write_text(os.path.join(config.model_dir, "DONE"),
                f"steps {int(trainer.optimizer.iterations.numpy())}\n")
    return history


def _without_ids(element):
    return {k: v for k, v in element.items() if k != "id"}


def _backup_step(backup_dir, steps_per_epoch):
    """The step a restarted run resumes at (0 for a new run)."""
    path = os.path.join(backup_dir, "training_metadata.json")
    if not tf.io.gfile.exists(path):
        return 0
    try:
        with tf.io.gfile.GFile(path) as f:
            return int(json.load(f)["epoch"]) * steps_per_epoch
    except (ValueError, KeyError) as e:
        raise ConfigError(f"{path} is corrupt ({e}); remove {backup_dir} to start "
                          "the run afresh") from None


def read_model_info(model_dir):
    """The `model.json` of a run directory (what eval and export rebuild from)."""
    path = os.path.join(model_dir, "model.json")
    if not tf.io.gfile.exists(path):
        raise ConfigError(f"{path} not found: {model_dir} is not a training run directory")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def load_network(model_dir, checkpoint="last"):
    """The trained network of a run: (keras.Model, model info dict).

    Args:
      model_dir: a run directory written by `run_training`.
      checkpoint: "last", "best", or a path to a `.weights.h5` file of a run.
    """
    info = read_model_info(model_dir)
    path = checkpoint
    if checkpoint in ("last", "best"):
        path = os.path.join(model_dir, "checkpoints", f"{checkpoint}.weights.h5")
    if not tf.io.gfile.exists(path):
        raise ConfigError(f"checkpoint {path} not found")
    network = model_lib.build_deeplab_largefov(
        num_classes=info["num_classes"], width_multiplier=info["width_multiplier"])
    # The checkpoint holds the CosegTrainer (network + optimizer state): load it into
    # an uncompiled trainer of the same structure (the optimizer state is not needed),
    # whose network is then the trained one.
    trainer = trainer_lib.CosegTrainer(network, num_classes=info["num_classes"],
                                       method="supervised")
    trainer.build()
    try:
        trainer.load_weights(path)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"checkpoint {path} cannot be read ({e}); it may be corrupt or "
                          "half-written") from None
    return network, info
