"""The run directory of a training run: the one owner of its files and their contract.

train.py writes it, a restarted train.py resumes from it, eval.py and export.py read it;
all of them go through this module, never through paths of their own:

    MODEL_DIR/
      config.json          the flags of the run (TrainConfig), written once, at its
                           first start; a restart compares its flags with it first
      labeled_ids.txt      the labeled images, one id a line (written once)
      model.json           what eval and export rebuild the network from (written once)
      image_labels.tsv     gmp, em_adapt: the image-level labels they read (written once)
      starts.jsonl         one JSON line per start of train.py: the step it started at
                           and the flags it changed that a restart may change
      checkpoints/last.weights.h5, best.weights.h5 (lowest validation loss, or training
                           loss without --val_data), epoch-NNNN.weights.h5
                           (--keep_checkpoints; epoch N ends at step N * checkpoint_every)
      backup/              the training state of the last interval (`Backup`):
        training_metadata.json   names the complete state file, and holds the step, the
                                 data position, the best value so far and the random
                                 state of dropout
        state-NNNNNN.weights.h5  network and optimizer
      history.csv          one row per checkpoint interval (loss terms, mining precision)
      logs/                TensorBoard
      DONE                 the run finished (its last step)

Rules:
- Nothing is written before it is checked. A start in a directory that holds a
  config.json compares the flags with it (`check_start`): a flag that alters the
  experiment (anything outside RESUME_MAY_CHANGE) is refused, naming each changed flag
  with its old and new value, and so are other labeled ids or image-level labels than
  the recorded ones. config.json, labeled_ids.txt, model.json and image_labels.tsv are
  written once; a restart never rewrites them, so they tell what the first steps used.
- A restarted run behaves as if it had never stopped: the backup holds the weights,
  the optimizer (its step), the position in the data streams, the best value of the
  monitored loss and the dropout random state. It resumes at the last interval.
- Every file is written under a temporary name and renamed when complete (a run killed
  at any moment leaves no half-written file under a final name); the backup's
  metadata, written last, is its commit point. A backup or checkpoint that is corrupt
  all the same is refused with a message naming the file.
- JSON never holds NaN or infinity (not JSON): an undefined value is null (`jsonable`).
- All through `tf.io.gfile`, so `gs://...` works too.

Under `--strategy=multi_worker` only the chief writes; the other workers check and read
(docs/DISTRIBUTED.md).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import inspect
import io
import json
import math
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from coseg_tf import errors
from coseg_tf import model as model_lib
from coseg_tf import precision
from coseg_tf import trainer as trainer_lib
from pipelines import textfiles

ConfigError = errors.ConfigError

CONFIG_FILE = "config.json"
MODEL_FILE = "model.json"
LABELED_IDS_FILE = "labeled_ids.txt"
IMAGE_LABELS_FILE = "image_labels.tsv"
STARTS_FILE = "starts.jsonl"
CHECKPOINT_DIR = "checkpoints"
BACKUP_DIR = "backup"
BACKUP_METADATA = "training_metadata.json"
HISTORY_FILE = "history.csv"
LOGS_DIR = "logs"
DONE_FILE = "DONE"
CHECKPOINT_NAMES = ("last", "best")
EPOCH_CHECKPOINT = "epoch-{epoch:04d}.weights.h5"
_KERAS_BACKUP_WEIGHTS = "latest.weights.h5"  # keras.callbacks.BackupAndRestore's name

# The flags a restart may change: they do not alter the experiment (what is trained,
# on what, how, and how it is measured). Every other flag must keep its recorded value.
RESUME_MAY_CHANGE = {
    "model_dir": "where the run directory is (it may have been moved)",
    "verbose": "the progress output",
    "keep_checkpoints": "whether interval checkpoints are kept from now on",
    "strategy": "how the steps are spread over devices, if the number of replicas "
                "(and so the global batch) stays the same: checked against the backup",
    "num_cpu_devices": "as --strategy",
    "fc6_impl": "how fc6 is computed (per tap or as a convolution): the same weights and "
                "outputs (equal within 1e-5)",
    "jit_compile": "whether the step is XLA-compiled: the same computation",
}


def path(model_dir: str, *names: str) -> str:
    """MODEL_DIR/names... (a file of the run directory)."""
    return os.path.join(model_dir, *names)


# === Atomic writes and JSON ===

def jsonable(value):
    """`value` with every NaN or infinite float as None: JSON has no NaN.

    Dicts, lists and tuples are converted recursively; NumPy scalars become Python
    numbers. An undefined metric (NaN) reads back as null.
    """
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(value, **kwargs) -> str:
    """JSON text of `jsonable(value)` (never NaN or Infinity)."""
    return json.dumps(jsonable(value), allow_nan=False, **kwargs)


def write_text_atomic(file_path: str, text: str) -> None:
    """Writes `text` under a temporary name in the same directory, then renames it."""
    directory, name = os.path.split(file_path)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}")
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, file_path, overwrite=True)


def save_weights_atomic(model, file_path: str) -> None:
    """`model.save_weights(file_path)` under a temporary name, renamed when complete."""
    directory, name = os.path.split(file_path)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}")  # still *.weights.h5
    model.save_weights(tmp, overwrite=True)
    tf.io.gfile.rename(tmp, file_path, overwrite=True)


# === model.json and the network ===

def network_args() -> tuple:
    """The arguments of `model.build_deeplab_largefov` that model.json records.

    Every keyword of the builder but `num_classes` (recorded on its own), `name` and
    `dtype_policy` (the run's precision is recorded as "mixed_precision"; a network is
    rebuilt in float32 whatever it trained in, `build_network`): a new builder argument
    is recorded and read back without a change here; a model.json written before it
    existed builds with the builder's default.
    """
    params = inspect.signature(model_lib.build_deeplab_largefov).parameters
    return tuple(n for n in params if n not in ("num_classes", "name", "dtype_policy"))


def model_info(config, scheme) -> dict:
    """The content of model.json for a run of `config` (a TrainConfig) on `scheme`.

    Beside the network's arguments: the scheme as data ("scheme": its classes and the
    vocabulary names each merges, `schema.Scheme.to_json`) and the vocabulary of the
    training data ("vocabulary"), so that eval, export and predict know the class names
    and can bind the scheme to other data (`schema.scheme_from_info`).
    """
    info = {"architecture": "deeplab_largefov", "parts": scheme.name,
            "class_names": list(scheme.class_names), "num_classes": scheme.num_classes,
            "human_region": config.human_region, "scheme": scheme.to_json(),
            "vocabulary": scheme.vocabulary.to_json() if scheme.vocabulary else None}
    info.update({name: getattr(config, name) for name in network_args()
                 if hasattr(config, name)})
    # The precision it trained in ("auto" resolved on the machine of the first start;
    # its variables are float32 under every policy).
    info["mixed_precision"] = precision.resolve(getattr(config, "mixed_precision", "off"))
    return info


def read_model_info(model_dir: str) -> dict:
    """The model.json of a run directory (what eval and export rebuild from).

    Raises ConfigError naming the file when it is missing, not JSON, or lacks
    "num_classes".
    """
    file_path = path(model_dir, MODEL_FILE)
    if not tf.io.gfile.exists(file_path):
        raise ConfigError(f"{file_path} not found: {model_dir} is not a training run "
                          "directory")
    try:
        info = json.loads(textfiles.read_text(file_path))
        if not isinstance(info, dict):
            raise ValueError(f"{file_path} holds {type(info).__name__}, not an object")
        info["num_classes"]  # noqa: B018 (a KeyError names what is missing)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{file_path} is corrupt ({type(e).__name__}: {e}); it is "
                          "written by train.py at the start of a run") from None
    return info


def checkpoint_path(model_dir: str, checkpoint: str = "last") -> str:
    """The weights file of `checkpoint`: "last", "best", or a path given as is.

    Raises ConfigError for an empty `checkpoint` (it does not check that the file
    exists: `require_checkpoint` does).
    """
    if not checkpoint:
        raise ConfigError("--checkpoint: last, best or a path to a .weights.h5")
    if checkpoint in CHECKPOINT_NAMES:
        return path(model_dir, CHECKPOINT_DIR, f"{checkpoint}.weights.h5")
    return checkpoint


def require_checkpoint(model_dir: str, checkpoint: str = "last") -> str:
    """`checkpoint_path`, refused (ConfigError naming flag and file) when it is absent."""
    file_path = checkpoint_path(model_dir, checkpoint)
    if not tf.io.gfile.exists(file_path):
        raise ConfigError(f"--checkpoint={checkpoint}: {file_path} not found")
    return file_path


def build_network(info: dict):
    """The network of model info `info` (random weights): num_classes + `network_args`.

    float32 whatever precision the run trained in (the checkpoint's variables are
    float32 under every policy); fc6 in the run's `fc6_impl` form ("auto" for runs
    that predate it: taps on CPU, the convolution with a GPU).
    """
    kwargs = {name: info[name] for name in network_args() if name in info}
    kwargs["dtype_policy"] = "float32"
    try:
        return model_lib.build_deeplab_largefov(num_classes=int(info["num_classes"]),
                                                **kwargs)
    except ValueError as e:
        raise ConfigError(f"model.json: {e}") from None


def load_network(model_dir: str, checkpoint: str = "last"):
    """The trained network of a run: (keras.Model, model info dict).

    Args:
      model_dir: a run directory written by train.py.
      checkpoint: "last", "best", or a path to a `.weights.h5` file of the run.

    Raises:
      ConfigError naming the file: no model.json, no such checkpoint, or a checkpoint
      that cannot be read into the network model.json describes.
    """
    info = read_model_info(model_dir)
    file_path = checkpoint_path(model_dir, checkpoint)
    if not tf.io.gfile.exists(file_path):
        raise ConfigError(f"checkpoint {file_path} not found")
    network = build_network(info)
    # The checkpoint holds the CosegTrainer (network + optimizer state): load it into
    # an uncompiled trainer of the same structure (the optimizer state is not needed),
    # whose network is then the trained one.
    trainer = trainer_lib.CosegTrainer(network, num_classes=info["num_classes"],
                                       objective="supervised")
    trainer.build()
    try:
        trainer.load_weights(file_path)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"checkpoint {file_path} cannot be read ({e}); it may be corrupt "
                          "or half-written") from None
    return network, info


# === config.json, the labeled ids, and the check before anything is written ===

def read_config(model_dir: str) -> Optional[dict]:
    """The recorded flags (config.json) of a run directory; None when there is none."""
    file_path = path(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(file_path):
        return None
    try:
        config = textfiles.read_json(file_path)
        if not isinstance(config, dict):
            raise ValueError(f"it holds {type(config).__name__}, not an object")
    except (OSError, ValueError) as e:
        raise ConfigError(f"{file_path} is corrupt ({e}); it records the flags of the run "
                          f"in {model_dir}: restore it, or use another --model_dir") from None
    return config


def read_labeled_ids(model_dir: str) -> Optional[list]:
    """The recorded labeled ids of a run directory; None when there are none."""
    file_path = path(model_dir, LABELED_IDS_FILE)
    if not tf.io.gfile.exists(file_path):
        return None
    try:
        return textfiles.read_list(file_path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{file_path} cannot be read ({e})") from None


def changed_flags(recorded: dict, config) -> list:
    """[(flag, recorded value, new value)] of the flags of `config` (a dataclass) that
    differ from `recorded` (config.json), RESUME_MAY_CHANGE included.

    A flag that config.json does not hold (added after the run started) counts with
    the dataclass default, the value the run had in effect.
    """
    changes = []
    for field in dataclasses.fields(config):
        if field.default is not dataclasses.MISSING:
            old = recorded.get(field.name, field.default)
        else:
            old = recorded.get(field.name)
        new = getattr(config, field.name)
        if old != new:
            changes.append((field.name, old, new))
    return changes


def format_changes(changes) -> str:
    """`changed_flags` output as "--flag: old -> new; ..." for a message."""
    return "; ".join(f"--{name}: {old!r} -> {new!r}" for name, old, new in changes)


def _existing_state(model_dir: str) -> list:
    """The files of a run that say training happened (backup, checkpoints, history)."""
    found = []
    for name in (BACKUP_DIR, CHECKPOINT_DIR, HISTORY_FILE, MODEL_FILE):
        if tf.io.gfile.exists(path(model_dir, name)):
            found.append(name)
    return found


@dataclasses.dataclass
class Start:
    """What `check_start` found: a new run, or a restart of the recorded one.

    Attributes:
      new: True when the directory holds no run yet (its files are to be written).
      allowed_changes: [(flag, old, new)] of RESUME_MAY_CHANGE flags that differ.
    """
    new: bool
    allowed_changes: list


def check_start(model_dir: str, config, *, labeled_ids, extra_files=None) -> Start:
    """Compares a start of train.py with what the run directory records; writes nothing.

    Args:
      model_dir: the run directory.
      config: the TrainConfig of this start.
      labeled_ids: the labeled ids this start resolved.
      extra_files: {file name: text} of other files written once (image_labels.tsv),
        compared with the recorded ones.

    Raises:
      ConfigError: a flag that alters the experiment differs from config.json (each
        changed flag named with its old and new value), or the labeled ids or an extra
        file differ from the recorded ones, or the directory holds training state but
        no config.json to compare with.
    """
    recorded = read_config(model_dir)
    if recorded is None:
        state = _existing_state(model_dir)
        if state:
            raise ConfigError(
                f"{model_dir} holds a run ({', '.join(state)}) but no {CONFIG_FILE} to "
                "compare the flags with; restore it, or use another --model_dir")
        return Start(new=True, allowed_changes=[])
    changes = changed_flags(recorded, config)
    refused = [c for c in changes if c[0] not in RESUME_MAY_CHANGE]
    if refused:
        listed = format_changes(refused)
        raise ConfigError(
            f"{model_dir} is a run with other flags ({path(model_dir, CONFIG_FILE)}): "
            f"{listed}. These change the experiment, so a restart must keep them (only "
            f"{', '.join('--' + n for n in RESUME_MAY_CHANGE)} may change); restart with "
            "the recorded values, or use another --model_dir for the new experiment")
    old_ids = read_labeled_ids(model_dir)
    if old_ids is not None and old_ids != list(labeled_ids):
        raise ConfigError(
            f"{model_dir} trained on other labeled images ({path(model_dir, LABELED_IDS_FILE)}"
            f": {len(old_ids)} ids) than these flags now select ({len(labeled_ids)} ids, "
            f"{_first_difference(old_ids, labeled_ids)}): the training data or the "
            "labeled-ids file changed; restore them, or use another --model_dir")
    for name, text in (extra_files or {}).items():
        file_path = path(model_dir, name)
        if tf.io.gfile.exists(file_path) and textfiles.read_text(file_path) != text:
            raise ConfigError(f"{file_path} differs from what the training data now gives: "
                              "the data changed since the run started; restore it, or "
                              "use another --model_dir")
    return Start(new=False, allowed_changes=[c for c in changes if c[0] in RESUME_MAY_CHANGE])


def _first_difference(old, new) -> str:
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            return f"line {i + 1}: {a!r} recorded, {b!r} now"
    return "one list is longer"


def record_start(model_dir: str, start: Start, config, *, scheme, labeled_ids, step,
                 extra_files=None) -> None:
    """Writes what `check_start` checked (chief only): the run's files when it is new,
    and a line of starts.jsonl for every start."""
    gfile = tf.io.gfile
    gfile.makedirs(path(model_dir, CHECKPOINT_DIR))
    if start.new:
        write_text_atomic(path(model_dir, CONFIG_FILE),
                          to_json(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n")
        write_text_atomic(path(model_dir, LABELED_IDS_FILE),
                          "".join(i + "\n" for i in labeled_ids))
        write_text_atomic(path(model_dir, MODEL_FILE),
                          to_json(model_info(config, scheme), indent=2) + "\n")
        for name, text in (extra_files or {}).items():
            write_text_atomic(path(model_dir, name), text)
    line = to_json({"time": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "step": step, "new": start.new,
        "changed": {name: [old, new] for name, old, new in start.allowed_changes}})
    starts = path(model_dir, STARTS_FILE)
    before = textfiles.read_text(starts) if gfile.exists(starts) else ""
    write_text_atomic(starts, before + line + "\n")


# === Checkpoints ===

class SaveWeights(keras.callbacks.Callback):
    """Writes the weights (network + optimizer) at the end of each interval, atomically.

    Args:
      file_path: the `.weights.h5` file; may hold `{epoch}` (1-based), e.g.
        EPOCH_CHECKPOINT.
      monitor: None writes every interval; a log name (e.g. "val_loss") writes only
        when it is lower than every earlier value of the run, `best` included.
      best: the lowest value of `monitor` so far (a restarted run's, from its backup);
        None for none yet.
    """

    def __init__(self, file_path, monitor=None, best=None):
        super().__init__()
        self.path = file_path
        self.monitor = monitor
        self.best = math.inf if best is None else float(best)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None or not float(np.mean(value)) < self.best:
                return
            self.best = float(np.mean(value))
        save_weights_atomic(self.model, self.path.format(epoch=epoch + 1))


# === The backup of a run ===

@dataclasses.dataclass
class BackupState:
    """The training state a restarted run resumes from (backup/training_metadata.json).

    Attributes:
      epoch: intervals completed.
      step: optimizer steps completed (epoch * steps per interval).
      weights: the state file's name in the backup directory (network and optimizer).
      best: the lowest value of `monitor` so far, None when there was none (a backup of
        an earlier version: read back from history.csv, see `read_backup`).
      monitor: the log name "best" follows ("val_loss", or "loss" without validation).
      data_position: batches each input pipeline has delivered; the streams start
        there on resume (None in a backup of an earlier version: step-derived).
      replicas: replicas in sync when it was written (None: unknown, earlier version).
      rng: the state of every dropout random generator, in the order of
        `rng_variables` (None: not recorded, earlier version).
    """
    epoch: int
    step: Optional[int]
    weights: str
    best: Optional[float] = None
    monitor: Optional[str] = None
    data_position: Optional[int] = None
    replicas: Optional[int] = None
    rng: Optional[list] = None


def rng_variables(trainer) -> list:
    """The random-generator states of the trainer's layers (dropout's SeedGenerators).

    Keras does not save them with the weights: without them a restarted run would draw
    the dropout masks of its first steps again.
    """
    return [v for v in trainer.variables if v.path.endswith("seed_generator_state")]


class Backup(keras.callbacks.Callback):
    """Saves the training state at the end of every interval; a killed run resumes there.

    A state is a complete `state-EEEEEE.weights.h5` (network and optimizer, written
    under a temporary name and renamed), then `training_metadata.json` naming it with
    the step, the data position, the best value and the dropout random state
    (`BackupState`), also written and renamed: the metadata is the commit point, so a
    run killed at any moment leaves it naming a complete file. Older state files are
    removed once the metadata has moved on. Place it after the `SaveWeights` whose
    best value it records. `read_backup` + `restore_backup` are the other half.

    Args:
      backup_dir: the directory of the state (MODEL_DIR/backup).
      best_from: the `SaveWeights` that follows the monitored loss (None: no best).
      data_position: step -> batches each input pipeline has delivered by then.
      replicas: replicas in sync.
      write: False on the non-chief workers of a cluster: they resume from the
        chief's backup but never write one.
    """

    def __init__(self, backup_dir, *, best_from=None, data_position=None, replicas=None,
                 write=True):
        super().__init__()
        self.backup_dir = backup_dir
        self.best_from = best_from
        self.data_position = data_position
        self.replicas = replicas
        self.write = write

    def on_epoch_end(self, epoch, logs=None):
        if not self.write:
            return
        gfile = tf.io.gfile
        gfile.makedirs(self.backup_dir)
        name = f"state-{epoch + 1:06d}.weights.h5"
        save_weights_atomic(self.model, os.path.join(self.backup_dir, name))
        step = int(self.model.optimizer.iterations.numpy())
        best = self.best_from.best if self.best_from is not None else None
        state = BackupState(
            epoch=epoch + 1, step=step, weights=name,
            best=best if best is not None and math.isfinite(best) else None,
            monitor=self.best_from.monitor if self.best_from is not None else None,
            data_position=self.data_position(step) if self.data_position else None,
            replicas=self.replicas,
            rng=[np.asarray(v.numpy()).tolist() for v in rng_variables(self.model)])
        write_text_atomic(os.path.join(self.backup_dir, BACKUP_METADATA),
                          to_json(dataclasses.asdict(state)) + "\n")
        for other in gfile.listdir(self.backup_dir):
            other = other.rstrip("/")
            if other != name and ".weights.h5" in other:  # older states, a dead run's tmp
                try:
                    gfile.remove(os.path.join(self.backup_dir, other))
                except tf.errors.OpError:
                    pass  # another cleaner was first; nothing depends on it


def read_backup(model_dir: str, steps_per_epoch: int) -> Optional[BackupState]:
    """The run's last backed-up state; None for a run that has none.

    Checks the metadata only (`restore_backup` loads the weights). Also reads the
    metadata of earlier versions (no best value: taken from history.csv) and the state
    of keras.callbacks.BackupAndRestore (latest.weights.h5).

    Raises:
      ConfigError: the metadata is unreadable, half-written or inconsistent, names a
        missing file, or was written with another interval length (--checkpoint_every).
    """
    backup_dir = path(model_dir, BACKUP_DIR)
    file_path = os.path.join(backup_dir, BACKUP_METADATA)
    if not tf.io.gfile.exists(file_path):
        return None
    fix = f"remove {backup_dir} to start the run afresh"
    try:
        meta = json.loads(textfiles.read_text(file_path))
        epoch = meta["epoch"]
        name = meta.get("weights", _KERAS_BACKUP_WEIGHTS)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch {epoch!r} is not an integer >= 0")
        if not isinstance(name, str) or not name.endswith(".weights.h5") or "/" in name:
            raise ValueError(f"weights {name!r} is not a .weights.h5 file name")
        known = {f.name for f in dataclasses.fields(BackupState)}
        state = BackupState(**{k: v for k, v in dict(meta, weights=name).items()
                               if k in known})
        if state.best is not None and not isinstance(state.best, (int, float)):
            raise ValueError(f"best {state.best!r} is not a number")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors.
        raise ConfigError(f"backup metadata {file_path} is corrupt or half-written "
                          f"({type(e).__name__}: {e}); {fix}") from None
    weights = os.path.join(backup_dir, name)
    if not tf.io.gfile.exists(weights):
        raise ConfigError(f"backup metadata {file_path} names {weights}, which does not "
                          f"exist (the backup is incomplete); {fix}")
    if state.step is not None and state.step != epoch * steps_per_epoch:
        raise ConfigError(
            f"the backup in {backup_dir} is at step {state.step} after {epoch} intervals, "
            f"but --checkpoint_every now makes intervals of {steps_per_epoch} steps: "
            f"restart with the flags of the run (its config.json), or {fix}")
    if state.monitor is None and "best" not in meta:  # written before the best was kept
        state.monitor, state.best = best_from_history(model_dir, epoch)
    return state


def best_from_history(model_dir: str, epochs: int):
    """(monitor, lowest value) over the first `epochs` rows of history.csv; the
    monitor is val_loss when the rows have it, else loss; (None, None) without rows."""
    rows = read_history(model_dir)[:epochs]
    if not rows:
        return None, None
    monitor = "val_loss" if "val_loss" in rows[0] else "loss"
    values = [r.get(monitor) for r in rows if r.get(monitor) is not None]
    return monitor, (min(values) if values else None)


def restore_backup(trainer, model_dir: str, state: BackupState, steps_per_epoch: int):
    """Loads the backed-up `state` into `trainer`; ConfigError if it is broken."""
    backup_dir = path(model_dir, BACKUP_DIR)
    weights = os.path.join(backup_dir, state.weights)
    fix = f"remove {backup_dir} to start the run afresh"
    try:
        trainer.load_weights(weights)
    except Exception as e:  # h5py and Keras raise many types for a broken file
        raise ConfigError(f"backup weights {weights} cannot be read ({type(e).__name__}: "
                          f"{e}); the file is corrupt or half-written; {fix}") from None
    step = int(trainer.optimizer.iterations.numpy())
    if step != state.epoch * steps_per_epoch:
        raise ConfigError(
            f"backup weights {weights} are at step {step}, but the backup metadata says "
            f"{state.epoch} intervals of {steps_per_epoch} steps "
            f"({state.epoch * steps_per_epoch}); restart with the flags of the run (its "
            f"config.json), or {fix}")
    if state.rng is not None:
        variables = rng_variables(trainer)
        if len(variables) != len(state.rng):
            raise ConfigError(f"backup metadata {os.path.join(backup_dir, BACKUP_METADATA)} "
                              f"holds {len(state.rng)} random states, the network has "
                              f"{len(variables)}; {fix}")
        for variable, value in zip(variables, state.rng):
            variable.assign(np.asarray(value, variable.dtype))


# === history.csv ===

def read_history(model_dir: str) -> list:
    """The rows of history.csv as {column: float or None}; None where the value is
    undefined (nan: e.g. mining precision of an interval with nothing mined) or empty.
    [] without a history."""
    file_path = path(model_dir, HISTORY_FILE)
    if not tf.io.gfile.exists(file_path):
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(textfiles.read_text(file_path))):
        parsed = {}
        for key, text in row.items():
            try:
                value = float(text)
            except (TypeError, ValueError):
                value = None
            parsed[key] = value if value is not None and math.isfinite(value) else None
        rows.append(parsed)
    return rows
