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
      backup/              the training state of the last interval (`Backup`): a
                           restarted run resumes there (training_metadata.json names
                           the complete state-NNNNNN.weights.h5 it belongs to)
      history.csv          one row per checkpoint interval (loss terms, mining precision)
      logs/                TensorBoard

Weight files are written under a temporary name and renamed when complete, so a run
killed at any moment leaves no half-written checkpoint under a final name; a backup or
checkpoint that is corrupt all the same is refused with a message naming the file.

Under `--strategy=multi_worker` only the chief writes the run directory; the other
workers train in lockstep and write nothing (docs/DISTRIBUTED.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from coseg_tf import consistency_losses
from coseg_tf import distribute
from coseg_tf import image_label_losses
from coseg_tf import losses as losses_lib
from coseg_tf import model as model_lib
from coseg_tf import objectives
from coseg_tf import precision
from coseg_tf import trainer as trainer_lib
from coseg_tf import weights as weights_lib
from pipelines import decode, schema, streams

# The --method choices: the objectives' registry.
METHODS = objectives.METHODS
# Labeled sets up to this size are cached decoded (~0.6 MB an image at VOC size).
CACHE_LABELED_MAX = 500


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
    norm: str = "none"
    fc6_impl: str = "auto"
    mixed_precision: str = "off"
    method: str = "coseg"
    alpha: float = losses_lib.DEFAULT_ALPHA
    beta: float = losses_lib.DEFAULT_BETA
    image_label_weight: float = image_label_losses.DEFAULT_IMAGE_LABEL_WEIGHT
    em_fg_share: float = image_label_losses.DEFAULT_FG_SHARE
    em_bg_share: float = image_label_losses.DEFAULT_BG_SHARE
    unlabeled_weight: float = consistency_losses.DEFAULT_UNLABELED_WEIGHT
    confidence_threshold: float = consistency_losses.DEFAULT_CONFIDENCE_THRESHOLD
    feature_dropout: float = consistency_losses.DEFAULT_FEATURE_DROPOUT
    mining_point: str = "argmax"
    mining_distance: str = "euclidean"
    mining_agreement: bool = False
    mining_targets: int = 1
    mining_features: str = "train"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    fc8_lr_multiplier: float = 10.0
    poly_power: float = 0.9
    steps: int = 6000
    jit_compile: bool = False
    checkpoint_every: int = 100
    keep_checkpoints: bool = False
    val_steps: int = 20
    strategy: str = "mirrored"
    num_cpu_devices: int = 0
    seed: int = 0
    verbose: int = 1


# The image-level labels an image-label method trained with (one line per image).
IMAGE_LABELS_FILE = "image_labels.tsv"


def image_labels_text(train_data, scheme):
    """The image-level labels of every training image as a TSV: id, then class names.

    What GMP and EM-Adapt read of the unlabeled images (background always present).
    """
    labels = streams.image_level_labels(train_data, scheme=scheme)
    lines = ["# id\tclasses present (image-level labels read by --method=gmp|em_adapt)"]
    for image_id in sorted(labels):
        names = [scheme.class_names[c] for c, on in enumerate(labels[image_id]) if on > 0]
        lines.append(image_id + "\t" + ",".join(names))
    return "\n".join(lines) + "\n"


def mining_options(config: TrainConfig) -> losses_lib.MiningOptions:
    """The `losses.MiningOptions` of the --mining_* flags (ValueError if invalid)."""
    return losses_lib.MiningOptions(
        point=config.mining_point, distance=config.mining_distance,
        agreement=bool(config.mining_agreement), num_targets=config.mining_targets,
        features=config.mining_features)


def build_objective(config: TrainConfig) -> objectives.Objective:
    """The objective of --method with the hyper-parameters it takes among the flags
    (ValueError naming the flag if one is out of range)."""
    return objectives.build(
        config.method, alpha=config.alpha, beta=config.beta, mining=mining_options(config),
        image_label_weight=config.image_label_weight, em_fg_share=config.em_fg_share,
        em_bg_share=config.em_bg_share, unlabeled_weight=config.unlabeled_weight,
        confidence_threshold=config.confidence_threshold,
        feature_dropout=config.feature_dropout)


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
    objective_class = objectives.get(config.method)
    if objective_class.needs.unlabeled:
        _positive(config, "batch_unlabeled")
    try:
        mining = mining_options(config)
    except ValueError as e:
        raise ConfigError(f"--mining_*: {e}") from None
    if not mining.is_paper and not objective_class.mines:
        miners = ", ".join(m for m, c in objectives.REGISTRY.items() if c.mines)
        raise ConfigError(f"--mining_* options change how L_coseg mines; --method="
                          f"{config.method} has no L_coseg (use --method={miners})")
    try:
        build_objective(config)
    except ValueError as e:
        # The objective names the hyper-parameter, which is the flag's name.
        raise ConfigError(f"--method={config.method}: --{e}") from None
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
    elif config.init == "run":
        _check_init_run(config, scheme)
    elif config.init != "random":
        raise ConfigError(f"--init={config.init!r}: vgg16, run or random")
    if config.norm not in model_lib.NORMS:
        raise ConfigError(f"--norm={config.norm!r} is not one of {', '.join(model_lib.NORMS)}")
    if config.norm != "none" and config.init == "vgg16":
        raise ConfigError(f"--norm={config.norm} cannot start from --init=vgg16: the "
                          "ImageNet VGG16 weights belong to the network without "
                          "normalisation (--norm=none, the paper's); use --init=random "
                          "with a norm")
    if config.fc6_impl not in model_lib.FC6_IMPLS:
        raise ConfigError(f"--fc6_impl={config.fc6_impl!r} is not one of "
                          f"{', '.join(model_lib.FC6_IMPLS)}")
    if config.mixed_precision not in precision.MIXED_PRECISION:
        raise ConfigError(f"--mixed_precision={config.mixed_precision!r} is not one of "
                          f"{', '.join(precision.MIXED_PRECISION)}")
    for flag in ("train_data", "val_data"):
        pattern = getattr(config, flag)
        if pattern is None:
            continue
        try:
            # Every file, not only the first: a shard of another schema among good
            # ones would otherwise fail mid-run, inside the input pipeline.
            for path in streams.list_files(pattern):
                decode.check_schema(path)
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
    """Stops training with a clear error at the first NaN/Inf loss or weight, before any save.

    The loss is checked after every step; the weights at the end of every interval,
    before the callbacks after this one (backup, checkpoints) write them: a step whose
    loss was finite can still leave infinite weights. Put it first in the list.
    """

    _ADVICE = "Lower --learning_rate or check the data."

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(np.mean(loss))):
            step = int(self.model.optimizer.iterations.numpy())
            raise FloatingPointError(
                f"training loss became {float(np.mean(loss))} at step {step} (batch "
                f"{batch} of this interval); stopped before writing checkpoints of it. "
                + self._ADVICE)

    def on_epoch_end(self, epoch, logs=None):
        bad = [v.path for v in self.model.trainable_variables
               if not np.all(np.isfinite(np.asarray(v.numpy())))]
        if bad:
            step = int(self.model.optimizer.iterations.numpy())
            raise FloatingPointError(
                f"{len(bad)} weight tensor(s) hold NaN/Inf at step {step} (e.g. "
                f"{', '.join(bad[:3])}); stopped before writing checkpoints of them. "
                + self._ADVICE)


def _write_text(path, text):
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _save_weights_atomic(model, path):
    """`model.save_weights(path)` under a temporary name, renamed when complete."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}")  # still *.weights.h5
    model.save_weights(tmp, overwrite=True)
    tf.io.gfile.rename(tmp, path, overwrite=True)


# === Checkpoints and the backup of a run ===

class SaveWeights(keras.callbacks.Callback):
    """Writes the weights (network + optimizer) at the end of each interval, atomically.

    Args:
      path: the `.weights.h5` file; may hold `{epoch}` (1-based), e.g. epoch-{epoch:04d}.
      monitor: None writes every interval; a log name (e.g. "val_loss") writes only
        when it is lower than at every earlier interval of this process.
    """

    def __init__(self, path, monitor=None):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.best = math.inf

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None or not float(np.mean(value)) < self.best:
                return
            self.best = float(np.mean(value))
        _save_weights_atomic(self.model, self.path.format(epoch=epoch + 1))


BACKUP_METADATA = "training_metadata.json"
_KERAS_BACKUP_WEIGHTS = "latest.weights.h5"  # keras.callbacks.BackupAndRestore's name


class Backup(keras.callbacks.Callback):
    """Saves the training state at the end of every interval; a killed run resumes there.

    A state is a complete `state-EEEEEE.weights.h5` (network and optimizer, written
    under a temporary name and renamed), then `training_metadata.json` naming it
    ({"epoch", "step", "weights"}), also written and renamed: the metadata is the
    commit point, so a run killed at any moment leaves it naming a complete file.
    Older state files are removed once the metadata has moved on.
    `read_backup` + `restore_backup` are the other half.

    Args:
      backup_dir: the directory of the state (MODEL_DIR/backup).
      write: False on the non-chief workers of a cluster: they resume from the
        chief's backup but never write one.
    """

    def __init__(self, backup_dir, write=True):
        super().__init__()
        self.backup_dir = backup_dir
        self.write = write

    def on_epoch_end(self, epoch, logs=None):
        if not self.write:
            return
        gfile = tf.io.gfile
        gfile.makedirs(self.backup_dir)
        name = f"state-{epoch + 1:06d}.weights.h5"
        _save_weights_atomic(self.model, os.path.join(self.backup_dir, name))
        _write_text(os.path.join(self.backup_dir, BACKUP_METADATA), json.dumps({
            "epoch": epoch + 1, "step": int(self.model.optimizer.iterations.numpy()),
            "weights": name}) + "\n")
        for other in gfile.listdir(self.backup_dir):
            other = other.rstrip("/")
            if other != name and ".weights.h5" in other:  # older states, a dead run's tmp
                try:
                    gfile.remove(os.path.join(self.backup_dir, other))
                except tf.errors.OpError:
                    pass  # another cleaner was first; nothing depends on it


def read_backup(backup_dir, steps_per_epoch):
    """(epoch, weights file) of the run's last backed-up state; (0, None) for a new run.

    Checks the metadata only (`restore_backup` loads the weights). Also reads the
    state of keras.callbacks.BackupAndRestore (latest.weights.h5), which earlier
    versions wrote.

    Raises:
      ConfigError: the metadata is unreadable, half-written or inconsistent, names a
        missing file, or was written with another interval length (--checkpoint_every).
    """
    path = os.path.join(backup_dir, BACKUP_METADATA)
    if not tf.io.gfile.exists(path):
        return 0, None
    fix = f"remove {backup_dir} to start the run afresh"
    try:
        with tf.io.gfile.GFile(path) as f:
            meta = json.load(f)
        epoch = meta["epoch"]
        name = meta.get("weights", _KERAS_BACKUP_WEIGHTS)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch {epoch!r} is not an integer >= 0")
        if not isinstance(name, str) or not name.endswith(".weights.h5") or "/" in name:
            raise ValueError(f"weights {name!r} is not a .weights.h5 file name")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors.
        raise ConfigError(f"backup metadata {path} is corrupt or half-written "
                          f"({type(e).__name__}: {e}); {fix}") from None
    weights = os.path.join(backup_dir, name)
    if not tf.io.gfile.exists(weights):
        raise ConfigError(f"backup metadata {path} names {weights}, which does not exist "
                          f"(the backup is incomplete); {fix}")
    step = meta.get("step")
    if step is not None and step != epoch * steps_per_epoch:
        raise ConfigError(
            f"the backup in {backup_dir} is at step {step} after {epoch} intervals, but "
            f"--checkpoint_every now makes intervals of {steps_per_epoch} steps: restart "
            f"with the flags of the run (its config.json), or {fix}")
    return epoch, weights


def restore_backup(trainer, backup_dir, epoch, weights, steps_per_epoch):
    """Loads the backed-up state `weights` into `trainer`; ConfigError if it is broken."""
    fix = f"remove {backup_dir} to start the run afresh"
    try:
        trainer.load_weights(weights)
    except Exception as e:  # h5py and Keras raise many types for a broken file
        raise ConfigError(f"backup weights {weights} cannot be read ({type(e).__name__}: "
                          f"{e}); the file is corrupt or half-written; {fix}") from None
    step = int(trainer.optimizer.iterations.numpy())
    if step != epoch * steps_per_epoch:
        raise ConfigError(
            f"backup weights {weights} are at step {step}, but the backup metadata says "
            f"{epoch} intervals of {steps_per_epoch} steps ({epoch * steps_per_epoch}); "
            f"restart with the flags of the run (its config.json), or {fix}")


# === Multi-worker ===

def _as_vectors(logs):
    # [1] instead of []: see _MultiWorkerTrainer.
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


class _MultiWorkerTrainer(trainer_lib.CosegTrainer):
    """`CosegTrainer` with two work-arounds for Keras 3 `fit` under MultiWorkerMirroredStrategy.

    1. Keras reduces each step's logs across workers with
       `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars ("Invalid
       reduction dimension 0 for input with 0 dimensions"; tensorflow#72388). The
       steps return each log as a [1] vector, whose axis-0 mean over all replicas is
       the same mean over replicas that MirroredStrategy logs: every worker sees the
       same global loss (so they all stop together on NaN).
    2. Before training, Keras reduces a whole first batch across workers to build the
       model symbolically, which fails for nested dict inputs; `build_trainer` builds
       network and optimizer beforehand, so that build has nothing to do.
    The variables are the `CosegTrainer`'s: checkpoints load into either class.
    """

    def train_step(self, data):
        return _as_vectors(super().train_step(data))

    def test_step(self, data):
        return _as_vectors(super().test_step(data))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if not (self.built and self.optimizer is not None and self.optimizer.built):
            raise RuntimeError("build the trainer and its optimizer before fit() under "
                               "MultiWorkerMirroredStrategy (build_trainer does)")


def build_trainer(config: TrainConfig, scheme, *, steps_per_execution=1):
    """The compiled `CosegTrainer` for `config` (call inside the strategy's scope)."""
    keras.utils.set_random_seed(config.seed)
    network = model_lib.build_deeplab_largefov(
        num_classes=scheme.num_classes, width_multiplier=config.width_multiplier,
        dropout_rate=config.dropout_rate, norm=config.norm, fc6_impl=config.fc6_impl,
        dtype_policy=precision.policy_name(config.mixed_precision))
    if config.init == "vgg16":
        weights_lib.load_vgg16_weights(network, config.init_weights)
    elif config.init == "run":
        # Network weights of another run (e.g. a supervised warm-up shared by several
        # methods); the optimizer and the learning-rate schedule start afresh.
        source, _ = load_network(*_init_run_dir(config.init_weights))
        network.set_weights(source.get_weights())
    multi_worker = distribute.is_multi_worker(tf.distribute.get_strategy())
    trainer_class = _MultiWorkerTrainer if multi_worker else trainer_lib.CosegTrainer
    trainer = trainer_class(
        network, num_classes=scheme.num_classes, objective=build_objective(config),
        weight_decay=config.weight_decay, fc8_lr_multiplier=config.fc8_lr_multiplier,
        class_names=scheme.class_names, mining_metrics=config.diagnostics)
    schedule = keras.optimizers.schedules.PolynomialDecay(
        config.learning_rate, decay_steps=config.steps, end_learning_rate=0.0,
        power=config.poly_power)
    # float16: dynamic loss scaling (coseg_tf.precision); XLA only when asked (on
    # this project's CPU it made the step 2.0-2.6x slower, docs/PERFORMANCE.md).
    optimizer = precision.wrap_optimizer(
        keras.optimizers.SGD(schedule, momentum=config.momentum), config.mixed_precision)
    trainer.compile(optimizer=optimizer, steps_per_execution=steps_per_execution,
                    jit_compile=bool(config.jit_compile))
    trainer.build()
    trainer.optimizer.build(trainer.network.trainable_variables)
    return trainer


def run_training(config: TrainConfig):
    """Trains as `config` says; returns the Keras History of this (possibly resumed) run."""
    if config.num_cpu_devices > 1 and not tf.config.list_physical_devices("GPU"):
        # Logical devices must exist before TensorFlow runs its first op.
        distribute.split_cpu(config.num_cpu_devices)
    # The strategy comes before validation: MultiWorkerMirroredStrategy must be made
    # before TensorFlow runs any op (validation reads the TFRecords).
    try:
        strategy = distribute.make_strategy(config.strategy,
                                            num_cpu_devices=config.num_cpu_devices)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    scheme, all_ids, labeled_ids = validate(config)
    replicas = strategy.num_replicas_in_sync
    if config.jit_compile and replicas > 1:
        # Keras compiles its whole step function, strategy.run over every replica
        # included; an XLA cluster cannot span devices ("Trying to access resource
        # ... located in device CPU:1 from device CPU:0").
        raise ConfigError(f"--jit_compile needs a single replica, but --strategy="
                          f"{config.strategy} runs {replicas}: XLA compiles the whole "
                          "step, which cannot span the replicas' devices; use one device "
                          "(--strategy=default) or leave --jit_compile off")
    multi_worker = distribute.is_multi_worker(strategy)
    # Only the chief writes the run directory (one worker unless multi_worker).
    chief = distribute.is_chief(strategy)

    # Keras "epochs" are checkpoint intervals; a restarted run resumes at the last one.
    steps_per_epoch = min(config.checkpoint_every, config.steps)
    epochs = math.ceil(config.steps / steps_per_epoch)
    backup_dir = os.path.join(config.model_dir, "backup")
    initial_epoch, backup_weights = read_backup(backup_dir, steps_per_epoch)
    if backup_weights is not None:
        _check_resumed_precision(config)
    initial_step = initial_epoch * steps_per_epoch

    # What the method reads of the streams (its objective says).
    needs = objectives.get(config.method).needs
    gfile = tf.io.gfile
    ckpt_dir = os.path.join(config.model_dir, "checkpoints")
    if chief:
        gfile.makedirs(ckpt_dir)
        _write_text(os.path.join(config.model_dir, "config.json"),
                    json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n")
        _write_text(os.path.join(config.model_dir, "labeled_ids.txt"),
                    "".join(i + "\n" for i in labeled_ids))
        _write_text(os.path.join(config.model_dir, "model.json"), json.dumps({
            "architecture": "deeplab_largefov", "parts": scheme.name,
            "class_names": list(scheme.class_names), "num_classes": scheme.num_classes,
            "width_multiplier": config.width_multiplier, "norm": config.norm,
            "human_region": config.human_region, "fc6_impl": config.fc6_impl,
            "mixed_precision": config.mixed_precision,
        }, indent=2) + "\n")
        if needs.image_labels:
            _write_text(os.path.join(config.model_dir, IMAGE_LABELS_FILE),
                        image_labels_text(config.train_data, scheme))

    def make_train_ds(batch_labeled, batch_unlabeled, seed):
        ds = streams.train_dataset(
            config.train_data, scheme=scheme,
            labeled_ids=labeled_ids, batch_labeled=batch_labeled,
            batch_unlabeled=batch_unlabeled, crop_size=config.crop_size,
            min_scale=config.min_scale, max_scale=config.max_scale,
            human_region_mode=config.human_region, diagnostics=config.diagnostics,
            # The unlabeled stream, image-level labels (GMP, EM-Adapt only) and strong
            # views (the consistency methods) only for the methods that read them.
            needs=needs,
            # A small labeled set is decoded once and kept in memory; otherwise every
            # epoch of the labeled stream re-reads the whole training set to find it.
            cache_labeled=len(labeled_ids) <= CACHE_LABELED_MAX,
            seed=seed)
        # Image ids are strings: they stay on the host (a GPU replica cannot hold them).
        return ds.map(lambda d: {k: _without_ids(v) for k, v in d.items()})

    # A resumed run continues with fresh random draws rather than replaying the first
    # steps' data.
    seed = config.seed + initial_step
    if multi_worker:
        # Each worker builds its own stream of per-replica batches over ALL training
        # files, with its own seed: no worker reads another's share of the data, and
        # each one sees the whole (small) labeled pool. Same global batch per step:
        # batch_labeled + batch_unlabeled per replica, on every replica of the cluster.
        def worker_ds(context):
            return make_train_ds(config.batch_labeled, config.batch_unlabeled,
                                 seed + 1_000_003 * context.input_pipeline_id)
        train_ds = strategy.distribute_datasets_from_function(worker_ds)
    else:
        # Global batches, split across the replicas by Keras.
        train_ds = make_train_ds(config.batch_labeled * replicas,
                                 config.batch_unlabeled * replicas, seed)
    val_ds = None
    if config.val_data:
        val_ids = streams.read_ids(config.val_data)
        val_ds = streams.labeled_dataset(
            config.val_data, ids=val_ids, scheme=scheme,
            batch_size=config.batch_labeled * replicas, crop_size=config.crop_size,
            min_scale=1.0, max_scale=1.0, flip=False,
            human_region_mode=config.human_region, seed=config.seed, shuffle_buffer=64)
        val_ds = val_ds.map(lambda d: {"labeled": _without_ids(d)})
        if multi_worker:
            # Every worker reads every validation file and keeps its slice of each
            # global batch (sharding by file could leave a worker with no record).
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.DATA)
            val_ds = val_ds.with_options(options)

    with strategy.scope():
        trainer = build_trainer(config, scheme)
        if backup_weights is not None:
            restore_backup(trainer, backup_dir, initial_epoch, backup_weights,
                           steps_per_epoch)

    monitor = "val_loss" if val_ds is not None else "loss"
    callbacks = [
        StopOnNaN(),  # first: it checks the weights before anything below saves them
        Backup(backup_dir, write=chief),
    ]
    if chief:
        callbacks += [
            SaveWeights(os.path.join(ckpt_dir, "last.weights.h5")),
            *([SaveWeights(os.path.join(ckpt_dir, "epoch-{epoch:04d}.weights.h5"))]
              if config.keep_checkpoints else []),
            SaveWeights(os.path.join(ckpt_dir, "best.weights.h5"), monitor=monitor),
            keras.callbacks.CSVLogger(os.path.join(config.model_dir, "history.csv"),
                                      append=True),
            keras.callbacks.TensorBoard(os.path.join(config.model_dir, "logs"),
                                        update_freq="epoch"),
        ]
    history = trainer.fit(
        train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
        initial_epoch=initial_epoch,
        validation_data=val_ds, validation_steps=config.val_steps if val_ds else None,
        callbacks=callbacks, verbose=config.verbose)
    if chief:
        _write_text(os.path.join(config.model_dir, "DONE"),
                    f"steps {int(trainer.optimizer.iterations.numpy())}\n")
    return history


def _without_ids(element):
    return {k: v for k, v in element.items() if k != "id"}


def _init_run_dir(init_weights):
    """The run directory of --init=run's --init_weights (RUN_DIR or RUN_DIR/checkpoints/X)."""
    path = init_weights.rstrip("/")
    if path.endswith(".weights.h5"):
        return os.path.dirname(os.path.dirname(path)), path
    return path, "last"


def _check_init_run(config, scheme):
    """--init=run: the source run exists and has this run's classes and width."""
    if not config.init_weights:
        raise ConfigError("--init=run needs --init_weights=RUN_DIR (a training run whose "
                          "last checkpoint starts this run) or a .weights.h5 inside one")
    run_dir, checkpoint = _init_run_dir(config.init_weights)
    try:
        info = read_model_info(run_dir)
    except ConfigError as e:
        raise ConfigError(f"--init_weights: {e}") from None
    if checkpoint == "last":
        checkpoint = os.path.join(run_dir, "checkpoints", "last.weights.h5")
    if not tf.io.gfile.exists(checkpoint):
        raise ConfigError(f"--init_weights: no checkpoint {checkpoint}")
    if info["num_classes"] != scheme.num_classes or info.get("parts") not in (None, scheme.name):
        raise ConfigError(f"--init_weights: {run_dir} was trained with --parts="
                          f"{info.get('parts')} ({info['num_classes']} classes), this run "
                          f"with --parts={scheme.name} ({scheme.num_classes})")
    if info["width_multiplier"] != config.width_multiplier:
        raise ConfigError(f"--init_weights: {run_dir} has --width_multiplier="
                          f"{info['width_multiplier']}, this run {config.width_multiplier}")
    if info.get("norm", "none") != config.norm:
        raise ConfigError(f"--init_weights: {run_dir} has --norm={info.get('norm', 'none')}, "
                          f"this run --norm={config.norm}")


def _check_resumed_precision(config):
    """A resumed run keeps its --mixed_precision: the backup holds that optimizer's state.

    (float16's loss-scale optimizer has variables the others lack.) The network's
    weights alone load across precisions: --init=run starts a new run from them.
    """
    try:
        trained = read_model_info(config.model_dir).get("mixed_precision", "off")
    except ConfigError:
        return  # no model.json yet: read_backup / restore_backup report the state
    if trained != config.mixed_precision:
        raise ConfigError(
            f"--mixed_precision={config.mixed_precision}, but the run in "
            f"{config.model_dir} trained with --mixed_precision={trained} (model.json) "
            f"and its backup holds that optimizer's state: resume with "
            f"--mixed_precision={trained}, or start a new run from its weights with "
            f"--init=run --init_weights={config.model_dir} (weights load across "
            "precisions)")


def read_model_info(model_dir):
    """The `model.json` of a run directory (what eval and export rebuild from)."""
    path = os.path.join(model_dir, "model.json")
    if not tf.io.gfile.exists(path):
        raise ConfigError(f"{path} not found: {model_dir} is not a training run directory")
    try:
        with tf.io.gfile.GFile(path) as f:
            info = json.load(f)
        for key in ("num_classes", "width_multiplier"):
            info[key]  # noqa: B018 (a KeyError names what is missing)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is corrupt ({type(e).__name__}: {e}); it is written by "
                          "train.py at the start of a run") from None
    return info


def load_network(model_dir, checkpoint="last"):
    """The trained network of a run: (keras.Model, model info dict).

    Args:
      model_dir: a run directory written by `run_training`.
      checkpoint: "last", "best", or a path to a `.weights.h5` file of a run.

    The network is float32 whatever precision the run trained in (its variables are
    float32 under every policy), with fc6 in the run's `fc6_impl` form ("auto" for
    runs that predate it: taps on CPU, the convolution with a GPU).
    """
    info = read_model_info(model_dir)
    path = checkpoint
    if checkpoint in ("last", "best"):
        path = os.path.join(model_dir, "checkpoints", f"{checkpoint}.weights.h5")
    if not tf.io.gfile.exists(path):
        raise ConfigError(f"checkpoint {path} not found")
    # float32 whatever the run's --mixed_precision: the checkpoint's variables are
    # float32 under every policy. fc6 in the run's form (older runs: "auto").
    try:
        network = model_lib.build_deeplab_largefov(
            num_classes=info["num_classes"], width_multiplier=info["width_multiplier"],
            norm=info.get("norm", "none"), fc6_impl=info.get("fc6_impl", "auto"),
            dtype_policy="float32")
    except ValueError as e:
        raise ConfigError(f"{os.path.join(model_dir, 'model.json')}: {e}") from None
    # The checkpoint holds the CosegTrainer (network + optimizer state): load it into
    # an uncompiled trainer of the same structure (the optimizer state is not needed),
    # whose network is then the trained one.
    trainer = trainer_lib.CosegTrainer(network, num_classes=info["num_classes"],
                                       objective="supervised")
    trainer.build()
    try:
        trainer.load_weights(path)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"checkpoint {path} cannot be read ({e}); it may be corrupt or "
                          "half-written") from None
    return network, info
