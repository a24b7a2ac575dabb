"""Training runs: a plain config in, a trained run directory out.

`train.py` turns its flags into a `TrainConfig` once and calls `run_training`; tests
and tools call `run_training` directly. Nothing here reads absl flags.

The run directory (config.json, labeled_ids.txt, model.json, checkpoints, the backup a
restarted run resumes from, history.csv) is `coseg_tf.run_dir`'s: its layout, the
check of a restart's flags against the recorded ones before anything is written, the
atomic writes and `load_network` live there.

Under `--strategy=multi_worker` only the chief writes the run directory; the other
workers train in lockstep and write nothing (docs/DISTRIBUTED.md).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional

import keras
from absl import logging
import numpy as np
import tensorflow as tf

from coseg_tf import consistency_losses
from coseg_tf import distribute
from coseg_tf import errors
from coseg_tf import image_label_losses
from coseg_tf import losses as losses_lib
from coseg_tf import model as model_lib
from coseg_tf import objectives
from coseg_tf import precision
from coseg_tf import run_dir
from coseg_tf import trainer as trainer_lib
from coseg_tf import weights as weights_lib
from pipelines import dataset_files, schema, streams, textfiles

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
    unlabeled_data: Optional[str] = None
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
IMAGE_LABELS_FILE = run_dir.IMAGE_LABELS_FILE


def image_labels_text(unlabeled_data, scheme):
    """The image-level labels of every unlabeled image as a TSV: id, then class names.

    What GMP and EM-Adapt read of the unlabeled images (background always present).
    """
    labels = streams.image_level_labels(unlabeled_data, scheme=scheme)
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


ConfigError = errors.ConfigError
BadRecordError = errors.BadRecordError


def build_objective(config: TrainConfig) -> objectives.Objective:
    """The objective of --method with the hyper-parameters it takes among the flags
    (ValueError naming the flag if one is out of range)."""
    return objectives.build(
        config.method, alpha=config.alpha, beta=config.beta, mining=mining_options(config),
        image_label_weight=config.image_label_weight, em_fg_share=config.em_fg_share,
        em_bg_share=config.em_bg_share, unlabeled_weight=config.unlabeled_weight,
        confidence_threshold=config.confidence_threshold,
        feature_dropout=config.feature_dropout)


def _positive(config, *names):
    for name in names:
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name} must be positive, got {getattr(config, name)}")


def validate(config: TrainConfig):
    """Checks the config and its inputs; returns (scheme, all training ids, labeled ids).

    Raises ConfigError naming the flag at fault, before anything is built or written.
    """
    try:
        scheme = schema.load_scheme(config.parts)
    except ValueError as e:
        raise ConfigError(f"--parts={config.parts}: {e}") from None
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
        if config.width_multiplier != 1.0:
            raise ConfigError(f"--init=vgg16 (ImageNet VGG16 weights: --init_weights, or "
                              f"Keras' cached copy) needs --width_multiplier=1.0, got "
                              f"{config.width_multiplier}; use --init=random for a "
                              "narrower network")
        if config.init_weights and not tf.io.gfile.exists(config.init_weights):
            raise ConfigError(f"--init_weights: no such file {config.init_weights}")
    elif config.init == "run":
        pass  # checked below, once the scheme is bound to the data's vocabulary
    elif config.init != "random":
        raise ConfigError(f"--init={config.init!r}: vgg16, run or random")
    if config.fc6_impl not in model_lib.FC6_IMPLS:
        raise ConfigError(f"--fc6_impl={config.fc6_impl!r} is not one of "
                          f"{', '.join(model_lib.FC6_IMPLS)}")
    if config.mixed_precision not in precision.CHOICES:
        raise ConfigError(f"--mixed_precision={config.mixed_precision!r} is not one of "
                          f"{', '.join(precision.CHOICES)}")
    scheme = check_data(config, scheme)
    if config.init == "run":
        _check_init_run(config, scheme)
    elif config.init == "vgg16" and not config.init_weights:
        # Keras' cached copy, fetched once (hash checked); the last check, since it may
        # download 59 MB.
        try:
            weights_lib.fetch_vgg16_weights()
        except weights_lib.WeightsUnavailableError as e:
            raise ConfigError(f"--init=vgg16 without --init_weights: {e}") from None
    all_ids = streams.read_ids(config.train_data)
    explicit = None
    if config.labeled_ids_file:
        if not tf.io.gfile.exists(config.labeled_ids_file):
            raise ConfigError(f"--labeled_ids_file: no such file {config.labeled_ids_file}")
        try:
            explicit = textfiles.read_list(config.labeled_ids_file)
        except (OSError, ValueError) as e:
            raise ConfigError(f"--labeled_ids_file: {e}") from None
    try:
        labeled_ids = streams.select_labeled_ids(
            all_ids, num_labeled=None if explicit is not None else config.num_labeled,
            seed=config.labeled_seed, labeled_ids=explicit)
    except ValueError as e:
        flag = "labeled_ids_file" if explicit is not None else "num_labeled"
        raise ConfigError(f"--{flag}: {e}") from None
    return scheme, all_ids, labeled_ids


def _check_files(config, flag, *, need_parts):
    """`dataset_files.check_files` of --FLAG; ConfigError naming the flag."""
    pattern = getattr(config, flag)
    try:
        # Every file, not only the first: a shard of another schema among good ones
        # would otherwise fail mid-run, inside the input pipeline.
        return dataset_files.check_files(pattern, need_parts=need_parts)
    except (ValueError, tf.errors.OpError) as e:
        raise ConfigError(f"--{flag}={pattern}: {e}") from None


def check_data(config: TrainConfig, scheme: schema.Scheme) -> schema.Scheme:
    """Checks the data flags; returns `scheme` bound to the training data's vocabulary.

    --train_data and --val_data must carry parts, of one vocabulary, which the scheme
    must cover (every part it names); --unlabeled_data may hold box-only records (the
    unlabeled pool), but then nothing may read part labels of the unlabeled images
    (--diagnostics, the image-label methods) and the human region must be the boxes.

    Raises ConfigError naming the flag and the file.
    """
    train = _check_files(config, "train_data", need_parts=True)
    try:
        scheme = scheme.bind(train.vocabulary)
    except ValueError as e:
        raise ConfigError(f"--parts={config.parts} does not fit --train_data="
                          f"{config.train_data}: {e}") from None
    if config.val_data is not None:
        val = _check_files(config, "val_data", need_parts=True)
        if val.vocabulary != train.vocabulary:
            raise ConfigError(
                f"--val_data={config.val_data}: {val.files[0]} has the part vocabulary "
                f"{val.vocabulary.describe()}, --train_data ({train.files[0]}) "
                f"{train.vocabulary.describe()}: records of different vocabularies cannot "
                "be mixed")
    if config.unlabeled_data is None:
        return scheme
    needs = objectives.get(config.method).needs
    if not needs.unlabeled:
        raise ConfigError(f"--unlabeled_data: --method={config.method} reads no "
                          "unlabeled images; drop the flag or use a method with the "
                          "unlabeled stream")
    unlabeled = _check_files(config, "unlabeled_data", need_parts=False)
    readers = [f for f, on in (("--diagnostics", config.diagnostics),
                               (f"--method={config.method} (image-level labels)",
                                needs.image_labels)) if on]
    if unlabeled.boxes_files and readers:
        raise ConfigError(
            f"--unlabeled_data={config.unlabeled_data}: {unlabeled.boxes_files[0]} holds "
            f"box-only records, but {' and '.join(readers)} read(s) the part labels of the "
            "unlabeled images, which box-only records do not have")
    if unlabeled.boxes_files and config.human_region == "instance":
        raise ConfigError(
            f"--unlabeled_data={config.unlabeled_data}: {unlabeled.boxes_files[0]} holds "
            "box-only records, which have no instance mask: use --human_region=boxes")
    if readers and unlabeled.vocabulary not in (None, train.vocabulary):
        raise ConfigError(
            f"--unlabeled_data={config.unlabeled_data}: {unlabeled.parts_files[0]} has the "
            f"part vocabulary {unlabeled.vocabulary.describe()}, --train_data "
            f"{train.vocabulary.describe()}; {' and '.join(readers)} read(s) its labels "
            "with the training scheme: records of different vocabularies cannot be mixed")
    return scheme


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


# Re-exported: the run directory's contract is run_dir's.
SaveWeights = run_dir.SaveWeights
Backup = run_dir.Backup
read_model_info = run_dir.read_model_info
load_network = run_dir.load_network


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
    mixed_precision = precision.resolve(config.mixed_precision)  # "auto" -> this machine's
    network = model_lib.build_deeplab_largefov(
        num_classes=scheme.num_classes, width_multiplier=config.width_multiplier,
        dropout_rate=config.dropout_rate, fc6_impl=config.fc6_impl,
        dtype_policy=precision.policy_name(mixed_precision))
    if config.init == "vgg16":  # a local file, or Keras' cached copy (validate fetched it)
        weights_lib.load_vgg16_weights(network,
                                       weights_lib.vgg16_weights_path(config.init_weights))
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
        keras.optimizers.SGD(schedule, momentum=config.momentum), mixed_precision)
    trainer.compile(optimizer=optimizer, steps_per_execution=steps_per_execution,
                    jit_compile=bool(config.jit_compile))
    trainer.build()
    trainer.optimizer.build(trainer.network.trainable_variables)
    return trainer


def run_training(config: TrainConfig):
    """Trains as `config` says; returns the Keras History of this (possibly resumed) run
    (empty for a run that had finished already: its backup is checked, nothing written).

    Raises:
      ConfigError: a flag or input that makes the run impossible, before any work.
      BadRecordError (a ConfigError): a record that validation (first records only)
        could not see, met while reading the data, named with its file and image id;
        the backup of the last interval stays, to resume once it is fixed.
      FloatingPointError: a NaN/Inf loss or weights (nothing of that step is saved).
    """
    with errors.bad_records_named(train_data=config.train_data, val_data=config.val_data,
                                  unlabeled_data=config.unlabeled_data):
        return _run_training(config)


def _run_training(config: TrainConfig):
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
    scheme, _, labeled_ids = validate(config)
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
    model_dir = config.model_dir

    # Keras "epochs" are checkpoint intervals; a restarted run resumes at the last one.
    steps_per_epoch = min(config.checkpoint_every, config.steps)
    epochs = math.ceil(config.steps / steps_per_epoch)

    # Everything is checked before anything is written: the flags against the recorded
    # ones (a restart may change only run_dir.RESUME_MAY_CHANGE), the labeled ids and
    # image-level labels against the recorded ones, the backup, the replica count.
    # What the method reads of the streams (its objective says).
    needs = objectives.get(config.method).needs
    once = {}
    if needs.image_labels:
        once[run_dir.IMAGE_LABELS_FILE] = image_labels_text(
            config.unlabeled_data or config.train_data, scheme)
    start = run_dir.check_start(model_dir, config, labeled_ids=labeled_ids,
                                extra_files=once)
    state = run_dir.read_backup(model_dir, steps_per_epoch)
    if state is not None and state.replicas not in (None, replicas):
        raise ConfigError(
            f"the backup in {run_dir.path(model_dir, run_dir.BACKUP_DIR)} was written with "
            f"{state.replicas} replicas in sync, this start has {replicas} (--strategy="
            f"{config.strategy}, --num_cpu_devices={config.num_cpu_devices}): the global "
            "batch (--batch_labeled + --batch_unlabeled per replica) would change; "
            f"restart on {state.replicas} replicas")
    initial_epoch = state.epoch if state is not None else 0
    initial_step = initial_epoch * steps_per_epoch
    # The data position: global batches delivered so far (one a step); a resumed run's
    # streams continue there, as if it had never stopped.
    position = initial_step
    if state is not None and state.data_position is not None:
        position = state.data_position
    finished = initial_epoch >= epochs
    if config.mixed_precision == precision.AUTO:
        logging.info("--mixed_precision=auto: %s on this machine",
                     precision.resolve(precision.AUTO))
    if finished:
        logging.info("%s: finished already (%d of %d steps): nothing to train", model_dir,
                     initial_step, config.steps)
    elif initial_epoch > 0:
        logging.info("%s: resuming at step %d of %d from its backup", model_dir,
                     initial_step, config.steps)

    def make_train_ds(batch_labeled, batch_unlabeled, seed, start_batch):
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
            seed=seed, start_batch=start_batch,
            # The unlabeled pool: every training image (labels hidden), or the records
            # of --unlabeled_data (e.g. box-only records, which have no labels at all).
            unlabeled_pattern=config.unlabeled_data)
        # Image ids are strings: they stay on the host (a GPU replica cannot hold them).
        return ds.map(lambda d: {k: _without_ids(v) for k, v in d.items()})

    if multi_worker:
        # Each worker builds its own stream of per-replica batches over ALL training
        # files, with its own seed: no worker reads another's share of the data, and
        # each one sees the whole (small) labeled pool. Same global batch per step:
        # batch_labeled + batch_unlabeled per replica, on every replica of the cluster.
        # A worker's stream delivers one batch per local replica and step.
        def worker_ds(context):
            local = context.num_replicas_in_sync // context.num_input_pipelines
            return make_train_ds(config.batch_labeled, config.batch_unlabeled,
                                 config.seed + 1_000_003 * context.input_pipeline_id,
                                 position * local)
        train_ds = strategy.distribute_datasets_from_function(worker_ds)
    else:
        # Global batches, split across the replicas by Keras.
        train_ds = make_train_ds(config.batch_labeled * replicas,
                                 config.batch_unlabeled * replicas, config.seed, position)
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
        if state is not None:
            run_dir.restore_backup(trainer, model_dir, state, steps_per_epoch)
    if finished:
        # The backup checked, nothing is written again (a run killed after its last
        # backup and before DONE gets its DONE).
        done = run_dir.path(model_dir, run_dir.DONE_FILE)
        if chief and not os.path.exists(done):
            run_dir.write_text_atomic(done, f"steps {initial_step}\n")
        return keras.callbacks.History()
    # All checked (the backup's weights too): the first write.
    if chief:
        run_dir.record_start(model_dir, start, config, scheme=scheme,
                             labeled_ids=labeled_ids, step=initial_step, extra_files=once)

    monitor = "val_loss" if val_ds is not None else "loss"
    # "best" continues from the backed-up best value (a restart's first interval is
    # best only if it beats the intervals before the restart).
    best = run_dir.SaveWeights(run_dir.checkpoint_path(model_dir, "best"), monitor=monitor,
                               best=state.best if state and state.monitor == monitor else None)
    callbacks = [
        StopOnNaN(),  # first: it checks the weights before anything below saves them
    ]
    if chief:
        callbacks += [
            run_dir.SaveWeights(run_dir.checkpoint_path(model_dir, "last")),
            *([run_dir.SaveWeights(run_dir.path(model_dir, run_dir.CHECKPOINT_DIR,
                                                run_dir.EPOCH_CHECKPOINT))]
              if config.keep_checkpoints else []),
            best,
            # A start from step 0 rewrites the history (rows of an abandoned start
            # would otherwise stay); a restart appends to it.
            keras.callbacks.CSVLogger(run_dir.path(model_dir, run_dir.HISTORY_FILE),
                                      append=initial_epoch > 0),
            keras.callbacks.TensorBoard(run_dir.path(model_dir, run_dir.LOGS_DIR),
                                        update_freq="epoch"),
        ]
    # After the checkpoints: the backup records the best value of its own interval.
    callbacks.append(run_dir.Backup(
        run_dir.path(model_dir, run_dir.BACKUP_DIR), best_from=best,
        data_position=lambda step: step, replicas=replicas, write=chief))
    history = trainer.fit(
        train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
        initial_epoch=initial_epoch,
        # The streams shuffle themselves (seeded, resumable); Keras' own shuffle does
        # not apply to a tf.data.Dataset and only warns.
        shuffle=False,
        validation_data=val_ds, validation_steps=config.val_steps if val_ds else None,
        callbacks=callbacks, verbose=config.verbose)
    if chief:
        run_dir.write_text_atomic(run_dir.path(model_dir, run_dir.DONE_FILE),
                                  f"steps {int(trainer.optimizer.iterations.numpy())}\n")
    return history


def _without_ids(element):
    return {k: v for k, v in element.items() if k != "id"}


def _init_run_dir(init_weights):
    """(run directory, checkpoint) of --init=run's --init_weights: RUN_DIR (its last
    checkpoint) or RUN_DIR/checkpoints/X.weights.h5."""
    source = init_weights.rstrip("/")
    if source.endswith(".weights.h5"):
        return os.path.dirname(os.path.dirname(source)), source
    return source, "last"


def _check_init_run(config, scheme):
    """--init=run: the source run exists and has this run's classes and width."""
    if not config.init_weights:
        raise ConfigError("--init=run needs --init_weights=RUN_DIR (a training run whose "
                          "last checkpoint starts this run) or a .weights.h5 inside one")
    source, checkpoint = _init_run_dir(config.init_weights)
    try:
        info = run_dir.read_model_info(source)
    except ConfigError as e:
        raise ConfigError(f"--init_weights: {e}") from None
    checkpoint = run_dir.checkpoint_path(source, checkpoint)
    if not tf.io.gfile.exists(checkpoint):
        raise ConfigError(f"--init_weights: no checkpoint {checkpoint}")
    recorded = schema.scheme_from_info(info)
    same = (recorded.same_merge(scheme) if recorded is not None and "scheme" in info
            else info.get("parts") in (None, scheme.name))
    if info["num_classes"] != scheme.num_classes or not same:
        raise ConfigError(f"--init_weights: {source} was trained with --parts="
                          f"{info.get('parts')} ({info['num_classes']} classes), this run "
                          f"with --parts={scheme.name} ({scheme.num_classes})")
    if info.get("width_multiplier") != config.width_multiplier:
        raise ConfigError(f"--init_weights: {source} has --width_multiplier="
                          f"{info.get('width_multiplier')}, this run {config.width_multiplier}")
