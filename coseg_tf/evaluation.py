"""Evaluation of trained part segmenters: whole-image predictions, IoU, the paper's tables.

`eval.py` turns its flags into an `EvalConfig` once and calls `evaluate`; tests and the
demo call `evaluate` (or the pieces below) directly. Nothing here reads absl flags.

Prediction (`Evaluator`). Each whole image goes through the network at batch 1; its
stride-8 logits are upsampled BILINEARLY to full resolution (`upsample_logits`), then
turned into probabilities by a softmax. Test-time augmentation averages PROBABILITIES:
`flip` adds the mirrored image (its probabilities are mirrored back; every merge scheme
of `pipelines.schema` puts left and right parts in the same class, so no class is
swapped), `scales` predicts the image resized by each factor (image bilinear, human
region nearest) and resizes the probabilities back to full resolution (bilinear,
half-pixel centres). The predicted label is the arg max of the average.

Alignment of the upsampling. The network's stride-2 pools pad one pixel on every side
(`coseg_tf/model.py`), so feature cell k sits on input pixel 8k and the map has
ceil(H / 8) cells. `upsample_logits` interpolates exactly on that grid: pixel y reads
feature coordinate y / 8, linearly between cells floor(y / 8) and floor(y / 8) + 1;
pixels past the last cell (y > 8 (h - 1), the last < 8 rows when H is not 8n + 1) take
the last cell's value. That is DeepLab's Caffe `Interp` (align-corners bilinear to
8 (h - 1) + 1 pixels, which is 321 for 321) followed by edge padding.
(`tf.image.resize`, half-pixel centres, would shift the map by 3.5 pixels.)

Metrics. One confusion matrix over the whole set (rows: ground truth, columns:
prediction; pixels labeled 255 are left out, whatever is predicted there), accumulated
per image with `tf.math.bincount` under one `tf.function` traced once for any image
size ([1, None, None, 3] input signature). From it:
  iou[c] = TP / (TP + FP + FN) of class c;
  a class absent from both the ground truth and the predictions of the whole set has
  no IoU (0 / 0): it is NaN in arrays, null in metrics.json, "-" in tables, and left
  out of every mean (a class predicted but absent from the ground truth, or present but
  never predicted, has IoU 0 and counts);
  mean_iou: mean over every class but background ("we do not take care of the
  background class", the paper §4; DESIGN.md §4);
  part_mean_iou: mean over the part classes, i.e. neither background nor "other": the
  "mean" column of the paper's Table 2 (the mean of head, body, hand, leg: 40 of its 41
  rows agree with that average within the rounding of the printed values, e.g.
  42.2, 26.4, 7.6, 23.6 -> 24.9; with "other" the means would be far higher);
  pixel_accuracy: correct pixels / labeled pixels (background included).

Tables (`table_columns`, `format_table_row`, `markdown_table`, `markdown_table1`):
  per-part schemes (head|body|hand|leg), Table 1: "head  others" (the part, "other");
  all4, Table 2: "head  body  hand  leg  mean" (mean = part_mean_iou);
  person_part6: its six classes and their mean.
Values are IoU in %, one decimal; a mean is computed from unrounded IoUs.

An evaluation directory (default MODEL_DIR/eval_<split>) holds, written through
`tf.io.gfile` (a temporary file renamed, so a reader never sees half a file):

    OUTPUT_DIR/
      metrics.json         IoU per class, means, pixel accuracy, confusion matrix,
                           checkpoint, data, image count, the config, images/s
      overlays/0000_<id>.png ...   --overlays=N: image | ground truth | prediction
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import time
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from coseg_tf import errors, grid, run_dir
from pipelines import dataset_files, schema, streams, textfiles

OUTPUT_STRIDE = grid.OUTPUT_STRIDE
IGNORE_LABEL = schema.IGNORE_LABEL
PER_PART_SCHEMES = ("head", "body", "hand", "leg")
# Column name of "other human region" in the paper's Table 1.
OTHERS_COLUMN = "others"
METRICS_FILE = "metrics.json"
OVERLAY_DIR = "overlays"
# The serving signature of a SavedModel written by coseg_tf/export.py.
SERVE_SIGNATURE = "serve_mask"
CLASS_NAMES_ASSET = "class_names.txt"
MODEL_INFO_ASSET = "model.json"  # the run's model.json (parts, human_region), if stored


# A flag or an input that makes the evaluation impossible; raised before any work.
# The same class as training's, so one `except` serves train.py, eval.py and tools.
ConfigError = errors.ConfigError


@dataclasses.dataclass
class EvalConfig:
    """Everything an evaluation needs; field names equal the flag names of eval.py.

    Args:
      eval_data: TFRecords to evaluate on (glob, or comma-separated globs).
      model_dir: a training run directory (`coseg_tf.run_dir`).
      checkpoint: 'last', 'best', or the path of a `.weights.h5` of the run.
      saved_model: an export directory (instead of model_dir): EXPORT_DIR or
        EXPORT_DIR/<version>; its `serve_mask` signature is called.
      parts: the part scheme; None = the model's (model.json; for a SavedModel its
        assets/model.json, else the scheme whose class names are its class_names.txt).
      human_region: 'boxes' or 'instance'; None = the model's (model.json, also stored
        in an export's assets; 'boxes' for a SavedModel that does not say).
      flip: add the mirrored image (test-time augmentation).
      scales: image scales averaged (test-time augmentation); (1.0,) = none.
      overlays: pictures of the first N images (image | ground truth | prediction).
      output_dir: where metrics.json and overlays go; None = MODEL_DIR/eval_<split>.
      max_images: evaluate the first N images only; 0 = all.
      verbose: 0 silent, 1 progress bar on stderr.
    """
    eval_data: str
    model_dir: Optional[str] = None
    checkpoint: str = "last"
    saved_model: Optional[str] = None
    parts: Optional[str] = None
    human_region: Optional[str] = None
    flip: bool = False
    scales: Sequence[float] = (1.0,)
    overlays: int = 0
    output_dir: Optional[str] = None
    max_images: int = 0
    verbose: int = 1


# === Metrics ===

def confusion_matrix(labels, predictions, num_classes: int,
                     ignore_label: int = IGNORE_LABEL) -> tf.Tensor:
    """int64 [C, C] counts of (ground truth, predicted) pairs; label `ignore_label` left out.

    Args:
      labels: int [...] ground-truth class ids in 0..C-1, or `ignore_label`.
      predictions: int [...] predicted class ids in 0..C-1, the shape of `labels`.
      num_classes: C.
      ignore_label: pixels with this label do not count, whatever their prediction.

    Raises (when run): InvalidArgumentError for a label or prediction out of range.
    """
    # labels, predictions: [N] once flattened
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    predictions = tf.reshape(tf.cast(predictions, tf.int32), [-1])
    valid = tf.not_equal(labels, ignore_label)
    labels = tf.boolean_mask(labels, valid)
    predictions = tf.boolean_mask(predictions, valid)
    with tf.control_dependencies([
            tf.debugging.assert_non_negative(labels, message="negative label"),
            tf.debugging.assert_less(labels, num_classes,
                                     message="label out of range of the class count"),
            tf.debugging.assert_non_negative(predictions, message="negative prediction"),
            tf.debugging.assert_less(predictions, num_classes,
                                     message="prediction out of range of the class count"),
    ]):
        index = labels * num_classes + predictions
    counts = tf.math.bincount(index, minlength=num_classes * num_classes,
                              maxlength=num_classes * num_classes, dtype=tf.int64)
    return tf.reshape(counts, [num_classes, num_classes])


def iou_from_confusion(confusion) -> np.ndarray:
    """float64 [C]: IoU of each class; NaN for a class absent from labels and predictions."""
    cm = np.asarray(confusion, np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)


def pixel_accuracy(confusion) -> float:
    """Correct pixels / labeled pixels; NaN when no pixel is labeled."""
    cm = np.asarray(confusion, np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else float("nan")


def mean_of(values) -> float:
    """Mean of the values that are not NaN (None counts as NaN); NaN if none is left."""
    values = np.array([np.nan if v is None else v for v in values], np.float64)
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")


def mean_iou_classes(class_names) -> list:
    """The classes of `mean_iou`: all but background."""
    return [c for c in class_names if c != "background"]


def part_classes(class_names) -> list:
    """The part classes (neither background nor "other"): the classes of Table 2's mean."""
    return [c for c in class_names if c not in ("background", schema.OTHER)]


def metrics_from_confusion(confusion, class_names) -> dict:
    """IoU per class (None where undefined), the two means, pixel accuracy, the matrix."""
    cm = np.asarray(confusion, np.int64)
    class_names = list(class_names)
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix {cm.shape} does not match the "
                         f"{len(class_names)} classes {class_names}")
    iou = iou_from_confusion(cm)
    by_name = {name: _none_if_nan(v) for name, v in zip(class_names, iou)}
    mean_classes = mean_iou_classes(class_names)
    parts = part_classes(class_names)
    return {
        "class_names": class_names,
        "iou": by_name,
        "mean_iou": _none_if_nan(mean_of(by_name[c] for c in mean_classes)),
        "mean_iou_classes": mean_classes,
        "part_mean_iou": _none_if_nan(mean_of(by_name[c] for c in parts)),
        "part_mean_iou_classes": parts,
        "absent_classes": [n for n, v in by_name.items() if v is None],
        "pixel_accuracy": _none_if_nan(pixel_accuracy(cm)),
        "num_pixels": int(cm.sum()),
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_axes": "rows: ground truth, columns: prediction",
    }


def _none_if_nan(value):
    return None if value is None or math.isnan(value) else float(value)


# === Tables in the paper's layout ===

def _scheme_name(scheme) -> str:
    if isinstance(scheme, schema.Scheme):
        return scheme.name
    if isinstance(scheme, Mapping):  # a metrics dict
        return scheme["parts"]
    return str(scheme)


def _iou_by_name(iou) -> Mapping:
    """{class name: IoU fraction or None} from a metrics dict or such a mapping."""
    if isinstance(iou, Mapping) and isinstance(iou.get("iou"), Mapping):
        return iou["iou"]
    return iou


def _class_names(scheme, metrics=None) -> list:
    """The class names of a Scheme, of a metrics dict, or of a scheme's name (the
    metrics' classes when they are of that scheme, else the built-in's)."""
    if isinstance(scheme, schema.Scheme):
        return list(scheme.class_names)
    if isinstance(scheme, Mapping):  # a metrics dict
        return list(scheme["class_names"])
    if isinstance(metrics, Mapping) and metrics.get("parts") == scheme \
            and "class_names" in metrics:
        return list(metrics["class_names"])
    return list(schema.get_scheme(str(scheme)).class_names)


def table_columns(scheme) -> list:
    """Column names of the paper's row for `scheme` (a Scheme, its name, or metrics).

    head|body|hand|leg: [part, "others"] (Table 1); all4: head, body, hand, leg, mean
    (Table 2); any other scheme (person_part6, a JSON scheme): its part classes and
    "mean".
    """
    name = _scheme_name(scheme)
    if name in PER_PART_SCHEMES:
        return [name, OTHERS_COLUMN]
    return part_classes(_class_names(scheme)) + ["mean"]


def table_values(iou, scheme) -> list:
    """The row's values in %, in `table_columns` order; None where a class is absent.

    Args:
      iou: a metrics dict of `evaluate`, or {class name: IoU in [0, 1] or None}.
      scheme: a Scheme or its name (default: the metrics' "parts").
    """
    by_name = _iou_by_name(iou)
    name = _scheme_name(scheme)
    if name in PER_PART_SCHEMES:
        values = [by_name.get(name), by_name.get(schema.OTHER)]
    else:
        parts = part_classes(_class_names(scheme, iou))
        values = [by_name.get(c) for c in parts]
        values.append(_none_if_nan(mean_of(values)))
    return [None if v is None else 100.0 * v for v in values]


def _cell(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _widths(columns):
    return [max(len(c), 5) for c in columns]


def format_table_header(scheme, *, label: str = "", label_width: int = 0) -> str:
    """Plain-text header of the paper's row, e.g. 'head  others' or 'head  body ... mean'."""
    columns = table_columns(scheme)
    cells = [c.rjust(w) for c, w in zip(columns, _widths(columns))]
    lead = [label.ljust(label_width)] if (label or label_width) else []
    return "  ".join(lead + cells)


def format_table_row(iou, scheme, *, label: str = "", label_width: int = 0) -> str:
    """Plain-text row under `format_table_header`, e.g. ' 43.7   67.2' (IoU in %)."""
    columns = table_columns(scheme)
    cells = [_cell(v).rjust(w) for v, w in zip(table_values(iou, scheme), _widths(columns))]
    lead = [label.ljust(label_width)] if (label or label_width) else []
    return "  ".join(lead + cells)


def markdown_table_header(scheme, *, label: str = "Method") -> str:
    """Two Markdown lines: '| Method | head | body | hand | leg | mean |' and the rule."""
    columns = table_columns(scheme)
    return ("| " + " | ".join([label] + columns) + " |\n"
            + "|" + "---|" + "---:|" * len(columns))


def markdown_table_row(iou, scheme, *, label: str = "") -> str:
    """One Markdown row under `markdown_table_header`: '| (b) | 44.1 | ... |'."""
    return "| " + " | ".join([label] + [_cell(v) for v in table_values(iou, scheme)]) + " |"


def markdown_table(rows, scheme, *, label: str = "Method") -> str:
    """A Markdown table of one scheme: rows = [(row label, metrics or IoU dict), ...]."""
    lines = [markdown_table_header(scheme, label=label)]
    lines += [markdown_table_row(iou, scheme, label=row_label) for row_label, iou in rows]
    return "\n".join(lines)


def markdown_table1(rows, *, label: str = "Method") -> str:
    """The paper's Table 1 in Markdown: per-part models side by side.

    Args:
      rows: [(row label, {part scheme name: metrics or IoU dict}), ...], e.g.
        [("(a)", {"head": m_head_a, "body": m_body_a, ...}), ...]. A part missing from
        a row prints "-".

    Columns: for each part present in any row (in the order head, body, hand, leg),
    "<part>" and "<part> others".
    """
    parts = [p for p in PER_PART_SCHEMES if any(p in models for _, models in rows)]
    columns = [c for p in parts for c in (p, f"{p} {OTHERS_COLUMN}")]
    lines = ["| " + " | ".join([label] + columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for row_label, models in rows:
        cells = []
        for p in parts:
            cells += ([_cell(v) for v in table_values(models[p], p)] if p in models
                      else ["-", "-"])
        lines.append("| " + " | ".join([row_label] + cells) + " |")
    return "\n".join(lines)


def format_report(metrics: Mapping) -> str:
    """A few lines for the terminal: the paper's row, per-class IoU, means, accuracy."""
    scheme = metrics["parts"]
    table = ("in the layout of the paper's Table 1" if scheme in PER_PART_SCHEMES else
             "in the layout of the paper's Table 2" if scheme == "all4" else
             f"of the scheme's parts ({scheme})")
    width = max(len(n) for n in metrics["class_names"])
    lines = [f"{metrics['num_images']} images of {metrics['eval_data']}, "
             f"scheme {scheme}, {metrics['checkpoint']}",
             f"IoU (%) {table}:",
             "  " + format_table_header(metrics),
             "  " + format_table_row(metrics, metrics),
             "per class:"]
    for name in metrics["class_names"]:
        value = metrics["iou"][name]
        lines.append(f"  {name.ljust(width)}  {_cell(_pct(value)).rjust(5)}")
    lines.append(f"mean IoU {_cell(_pct(metrics['mean_iou']))} over "
                 f"{', '.join(metrics['mean_iou_classes'])} (background left out)")
    if metrics["part_mean_iou_classes"] != metrics["mean_iou_classes"]:
        lines.append(f"part mean IoU {_cell(_pct(metrics['part_mean_iou']))} over "
                     f"{', '.join(metrics['part_mean_iou_classes'])}")
    if metrics["absent_classes"]:
        lines.append(f"absent from labels and predictions (no IoU, out of the means): "
                     f"{', '.join(metrics['absent_classes'])}")
    lines.append(f"pixel accuracy {_cell(_pct(metrics['pixel_accuracy']))}, "
                 f"{metrics['images_per_second']:.2f} images/s")
    return "\n".join(lines)


def _pct(value):
    return None if value is None else 100.0 * value


# === Prediction ===

upsample_logits = grid.upsample_logits


def network_predict_fn(network) -> Callable:
    """(image, region) -> probabilities [1, H, W, C] of a coseg_tf Keras network."""

    def predict(image, region):
        logits = network({"image": image, "human_region": region}, training=False)["logits"]
        return tf.nn.softmax(upsample_logits(logits, tf.shape(image)[1:3]), axis=-1)

    return predict


def saved_model_predict_fn(signature) -> Callable:
    """(image, region) -> probabilities [1, H, W, C] from a `serve_mask` signature.

    The signature takes image uint8 [B, H, W, 3] and human_mask uint8 [B, H, W] (1 in
    the human region) and returns "probabilities" float32 [B, H, W, C].
    """

    def predict(image, region):
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        mask = tf.cast(region[..., 0] > 0.5, tf.uint8)
        return tf.cast(signature(image=image, human_mask=mask)["probabilities"], tf.float32)

    return predict


def predict_probabilities(predict_fn, image, region, *, flip: bool = False,
                          scales: Sequence[float] = (1.0,)) -> tf.Tensor:
    """Probabilities [1, H, W, C] averaged over the test-time augmentations.

    Args:
      predict_fn: (image [1, h, w, 3] float32 0..255, region [1, h, w, 1]) ->
        probabilities [1, h, w, C] at the resolution it was given.
      image: float32 [1, H, W, 3].
      region: float32 [1, H, W, 1].
      flip: also predict the mirrored image and mirror its probabilities back.
      scales: factors the image is resized by (image bilinear, region nearest); each
        scale's probabilities are resized back to H x W (bilinear, half-pixel centres).
    """
    size = tf.shape(image)[1:3]
    total = None
    count = 0
    for scale in scales:
        if scale == 1.0:
            image_s, region_s = image, region
        else:
            scaled = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * scale),
                                        tf.int32), 1)
            image_s = tf.image.resize(image, scaled, method="bilinear")
            region_s = tf.image.resize(region, scaled, method="nearest")
        views = [predict_fn(image_s, region_s)]
        if flip:
            mirrored = predict_fn(tf.reverse(image_s, axis=[2]), tf.reverse(region_s, axis=[2]))
            views.append(tf.reverse(mirrored, axis=[2]))
        for probs in views:
            if scale != 1.0:
                probs = tf.image.resize(probs, size, method="bilinear")
            total = probs if total is None else total + probs
            count += 1
    return total / float(count)


class Evaluator:
    """Accumulates the confusion matrix of a model over whole images.

    Args:
      predict_fn: (image [1, H, W, 3] float32 0..255, region [1, H, W, 1] float32) ->
        probabilities [1, H, W, C] (`network_predict_fn`, `saved_model_predict_fn`).
      num_classes: C.
      flip, scales: test-time augmentation (`predict_probabilities`).

    Example:
      >>> ev = Evaluator(network_predict_fn(network), num_classes=6)
      >>> for element in streams.eval_dataset(pattern, scheme="all4"):
      ...     prediction = ev.update(element)
      >>> ev.confusion  # int64 [6, 6], rows ground truth
    """

    def __init__(self, predict_fn, *, num_classes: int, flip: bool = False,
                 scales: Sequence[float] = (1.0,)):
        self.predict_fn = predict_fn
        self.num_classes = int(num_classes)
        self.flip = bool(flip)
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or any(not s > 0 for s in self.scales):
            raise ValueError(f"scales must be positive numbers, got {scales!r}")
        self.confusion = np.zeros([self.num_classes, self.num_classes], np.int64)
        self.num_images = 0
        # Whole images differ in size: one trace for any size (None height and width)
        # rather than a trace per size. (reduce_retracing alone still traced up to three
        # times, [1, 375, 500] -> [1, None, 500] -> [1, None, None], seconds each.)
        image_spec = tf.TensorSpec([1, None, None, 3], tf.float32)
        region_spec = tf.TensorSpec([1, None, None, 1], tf.float32)
        labels_spec = tf.TensorSpec([1, None, None], tf.int32)
        self._step = tf.function(self._step_impl, reduce_retracing=True,
                                 input_signature=[image_spec, region_spec, labels_spec])
        self._predict = tf.function(self._predict_impl, reduce_retracing=True,
                                    input_signature=[image_spec, region_spec])

    def _predict_impl(self, image, region):
        return predict_probabilities(self.predict_fn, image, region, flip=self.flip,
                                     scales=self.scales)

    def _step_impl(self, image, region, labels):
        probs = self._predict_impl(image, region)
        # prediction: [1, H, W]
        prediction = tf.argmax(probs, axis=-1, output_type=tf.int32)
        return confusion_matrix(labels, prediction, self.num_classes), prediction

    def predict(self, image, region) -> tf.Tensor:
        """Probabilities [1, H, W, C] of one image (with the test-time augmentation)."""
        return self._predict(tf.convert_to_tensor(image, tf.float32),
                             tf.convert_to_tensor(region, tf.float32))

    def update(self, element) -> np.ndarray:
        """Adds one eval element ({"image", "human_region", "labels"}, batch 1) to the
        confusion matrix; returns its predicted label map, int32 [H, W]."""
        confusion, prediction = self._step(
            tf.convert_to_tensor(element["image"], tf.float32),
            tf.convert_to_tensor(element["human_region"], tf.float32),
            tf.convert_to_tensor(element["labels"], tf.int32))
        self.confusion += confusion.numpy()
        self.num_images += 1
        return prediction.numpy()[0]


# === Progress ===

class ProgressBar:
    """A one-line progress bar with images/s, on stderr.

    Args:
      total: number of steps expected (None or 0: unknown).
      stream: where to write (stderr).
      enabled: False writes nothing.
      interval: seconds between redraws (a non-terminal gets a line every 10%).
      label: the word the line starts with.
    """

    def __init__(self, total, *, stream=None, enabled: bool = True, interval: float = 0.5,
                 label: str = "eval"):
        self.total = total or None
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interval = interval
        self.start = time.perf_counter()
        self._last = -math.inf
        self._last_decile = -1
        self._printed = None  # the count on the last line written (non-terminal)
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def _line(self, done):
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        if self.total:
            filled = int(30 * done / self.total)
            bar = "=" * filled + (">" if filled < 30 else "") + "." * max(29 - filled, 0)
            return f"{self.label} {done}/{self.total} [{bar}] {rate:.2f} images/s"
        return f"{self.label} {done} images, {rate:.2f} images/s"

    def update(self, done: int):
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._tty:
            if now - self._last >= self.interval or done == self.total:
                self.stream.write("\r" + self._line(done))
                self.stream.flush()
                self._last = now
        elif self.total:
            decile = 10 * done // self.total
            if decile > self._last_decile:
                self.stream.write(self._line(done) + "\n")
                self._last_decile = decile
                self._printed = done

    def close(self, done: int):
        if not self.enabled:
            return
        if self._tty:
            self.stream.write("\r" + self._line(done) + "\n")
        elif self._printed != done:
            self.stream.write(self._line(done) + "\n")
        self.stream.flush()


# === Files ===

# The split name of an evaluation directory (eval_<split>) is dataset_files'.
split_name = dataset_files.split_name


def resolve_saved_model(path: str) -> str:
    """The SavedModel directory of `path`: itself, or its highest numeric version."""
    if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        return path
    if not tf.io.gfile.isdir(path):
        raise ConfigError(f"--saved_model={path}: no such directory")
    versions = []
    for entry in tf.io.gfile.listdir(path):
        entry = entry.rstrip("/")
        if entry.isdigit() and tf.io.gfile.exists(os.path.join(path, entry, "saved_model.pb")):
            versions.append(int(entry))
    if not versions:
        raise ConfigError(f"--saved_model={path}: neither a SavedModel (no saved_model.pb) "
                          "nor an export directory with numbered versions")
    return os.path.join(path, str(max(versions)))


def read_class_names(saved_model_dir: str):
    """The class names of an export (assets/class_names.txt); None when it has none."""
    path = os.path.join(saved_model_dir, "assets", CLASS_NAMES_ASSET)
    if not tf.io.gfile.exists(path):
        return None
    try:
        return textfiles.read_list(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--saved_model: {e}") from None


def read_saved_model_info(saved_model_dir: str) -> dict:
    """The run's model.json that coseg_tf/export.py stores as an asset ({} if absent)."""
    path = os.path.join(saved_model_dir, "assets", MODEL_INFO_ASSET)
    if not tf.io.gfile.exists(path):
        return {}
    try:
        info = textfiles.read_json(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--saved_model: {e}") from None
    return info if isinstance(info, dict) else {}


def _recorded_scheme(info: dict, flag: str):
    """The scheme a model.json records (`schema.scheme_from_info`); ConfigError naming
    the flag when it is unreadable."""
    try:
        return schema.scheme_from_info(info)
    except ValueError as e:
        raise ConfigError(f"{flag}: model.json: {e}") from None


def _scheme_of_class_names(class_names):
    for scheme in schema.SCHEMES.values():
        if list(scheme.class_names) == list(class_names):
            return scheme
    return None


# === Evaluation run ===

@dataclasses.dataclass
class _Resolved:
    """What `validate` found: the scheme, region mode, files, output dir, model source."""
    scheme: schema.Scheme
    human_region: str
    files: list
    output_dir: str
    model_info: Optional[dict]
    saved_model_dir: Optional[str]
    saved_class_names: Optional[list]


def validate(config: EvalConfig) -> _Resolved:
    """Checks the config and its inputs before any model is built or image read.

    Raises ConfigError naming the flag at fault.
    """
    if bool(config.model_dir) == bool(config.saved_model):
        raise ConfigError("pass exactly one of --model_dir (a training run) and "
                          "--saved_model (an export)"
                          + (f"; got both {config.model_dir} and {config.saved_model}"
                             if config.model_dir else ""))
    if not config.eval_data:
        raise ConfigError("--eval_data is required (TFRecords of tools/make_tfrecords.py)")
    try:
        # Every file: a foreign shard among good ones would otherwise fail mid-run.
        data = dataset_files.check_files(config.eval_data, need_parts=True)
    except (ValueError, tf.errors.OpError) as e:
        raise ConfigError(f"--eval_data={config.eval_data}: {e}") from None
    files = list(data.files)
    scales = tuple(config.scales)
    if not scales or any(isinstance(s, bool) or not isinstance(s, (int, float))
                         or not s > 0 for s in scales):
        raise ConfigError(f"--scales must be positive numbers, got {list(scales)}")
    for name in ("overlays", "max_images"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"--{name} must be an int >= 0, got {value!r}")
    given = None
    if config.parts is not None:
        try:
            given = schema.load_scheme(config.parts)
        except ValueError as e:
            raise ConfigError(f"--parts={config.parts}: {e}") from None
    if config.human_region not in (None, "boxes", "instance"):
        raise ConfigError(f"--human_region={config.human_region!r}: boxes or instance")

    info = saved_dir = saved_names = None
    split = split_name(files, config.eval_data)
    if config.model_dir:
        try:
            info = run_dir.read_model_info(config.model_dir)
        except ConfigError as e:
            raise ConfigError(f"--model_dir: {e}") from None
        run_dir.require_checkpoint(config.model_dir, config.checkpoint)
        num_classes, model_parts = int(info["num_classes"]), info.get("parts")
        model_scheme = _recorded_scheme(info, "--model_dir")
        where = f"the checkpoint of {config.model_dir} (model.json: parts={model_parts})"
        default_region = info.get("human_region", "boxes")
        output_dir = config.output_dir or os.path.join(config.model_dir, f"eval_{split}")
    else:
        saved_dir = resolve_saved_model(config.saved_model)
        saved_names = read_class_names(saved_dir)
        saved_info = read_saved_model_info(saved_dir)
        guessed = _scheme_of_class_names(saved_names) if saved_names else None
        model_scheme = _recorded_scheme(saved_info, "--saved_model") or guessed
        model_parts = saved_info.get("parts") or (guessed.name if guessed else None)
        num_classes = len(saved_names) if saved_names else saved_info.get("num_classes")
        where = f"the SavedModel {saved_dir} ({CLASS_NAMES_ASSET}: {saved_names})"
        default_region = saved_info.get("human_region", "boxes")
        if config.output_dir:
            output_dir = config.output_dir
        elif os.path.basename(saved_dir.rstrip("/")).isdigit():
            output_dir = os.path.join(os.path.dirname(saved_dir.rstrip("/")), f"eval_{split}")
        else:
            output_dir = os.path.join(saved_dir, f"eval_{split}")

    scheme = given or model_scheme
    if scheme is None:
        raise ConfigError(f"--parts is needed: the scheme of {where} is unknown"
                          + (f" (model.json names {model_parts!r}, not a built-in scheme)"
                             if model_parts else ""))
    parts = scheme.name
    # The scheme over the evaluation data's vocabulary: every part it names must be in
    # it (another vocabulary with the same names is fine: the merge is by name).
    try:
        scheme = scheme.bind(data.vocabulary)
    except ValueError as e:
        raise ConfigError(f"--eval_data={config.eval_data}: the scheme of "
                          f"{'--parts' if given else where} does not fit it: {e}") from None
    if num_classes is not None and scheme.num_classes != num_classes:
        raise ConfigError(
            f"--parts={parts} has {scheme.num_classes} classes {list(scheme.class_names)} "
            f"but {where} has {num_classes} classes; pass the model's scheme "
            f"({model_parts or 'see its class names'}) or another model")
    if model_scheme is not None and not scheme.same_merge(model_scheme):
        logging.warning("--parts=%s differs from the model's scheme %s (same class count): "
                        "evaluating with the classes of %s", parts, model_parts, parts)
    return _Resolved(scheme=scheme, human_region=config.human_region or default_region,
                     files=files, output_dir=output_dir, model_info=info,
                     saved_model_dir=saved_dir, saved_class_names=saved_names)


def load_predict_fn(config: EvalConfig, resolved: _Resolved):
    """(predict_fn, checkpoint or SavedModel path) for the model of `config`."""
    if config.model_dir:
        try:
            network, _ = run_dir.load_network(config.model_dir, config.checkpoint)
        except ConfigError as e:
            raise ConfigError(f"--checkpoint={config.checkpoint}: {e}") from None
        return (network_predict_fn(network),
                run_dir.checkpoint_path(config.model_dir, config.checkpoint))
    try:
        loaded = tf.saved_model.load(resolved.saved_model_dir)
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise ConfigError(f"--saved_model={config.saved_model}: cannot load "
                          f"{resolved.saved_model_dir} ({e})") from None
    if SERVE_SIGNATURE not in loaded.signatures:
        raise ConfigError(f"--saved_model={config.saved_model}: no signature "
                          f"{SERVE_SIGNATURE!r} (has {sorted(loaded.signatures)})")
    signature = loaded.signatures[SERVE_SIGNATURE]
    predict = saved_model_predict_fn(signature)
    predict.keepalive = loaded  # the signature's variables live as long as `loaded`
    return predict, resolved.saved_model_dir


def evaluate(config: EvalConfig) -> dict:
    """Evaluates a model on `config.eval_data`; writes and returns the metrics.

    Returns the content of OUTPUT_DIR/metrics.json: `metrics_from_confusion`'s keys,
    plus "parts", "checkpoint", "model_dir", "saved_model", "eval_data", "num_images",
    "flip", "scales", "human_region", "config" (the EvalConfig), "seconds" (the loop,
    pictures excluded), "images_per_second", "first_image_seconds" (graph tracing
    included), "images_per_second_after_first", "output_dir", "overlays" (paths).
    """
    resolved = validate(config)
    # A record that validation (first records only) could not see stops the evaluation
    # where it is read, named (file, position, image id); metrics.json is not written.
    with errors.bad_records_named(eval_data=config.eval_data):
        return _evaluate(config, resolved)


def _evaluate(config: EvalConfig, resolved: _Resolved) -> dict:
    scheme = resolved.scheme
    predict_fn, checkpoint = load_predict_fn(config, resolved)
    evaluator = Evaluator(predict_fn, num_classes=scheme.num_classes, flip=config.flip,
                          scales=config.scales)

    total = len(streams.read_ids(config.eval_data))
    if config.max_images:
        total = min(total, config.max_images)
    dataset = streams.eval_dataset(config.eval_data, scheme=scheme,
                                   human_region_mode=resolved.human_region)
    if config.max_images:
        dataset = dataset.take(config.max_images)

    tf.io.gfile.makedirs(resolved.output_dir)
    overlay_paths = []
    overlay_seconds = 0.0
    first_seconds = None
    progress = ProgressBar(total, enabled=bool(config.verbose))
    start = time.perf_counter()
    for index, element in enumerate(dataset):
        prediction = evaluator.update(element)
        if index < config.overlays:
            tick = time.perf_counter()
            overlay_paths.append(_write_overlay(resolved.output_dir, index, element,
                                                prediction, scheme.class_names))
            overlay_seconds += time.perf_counter() - tick
        if first_seconds is None:  # the first image pays for tracing the graph
            first_seconds = time.perf_counter() - start - overlay_seconds
        progress.update(index + 1)
    seconds = time.perf_counter() - start - overlay_seconds
    progress.close(evaluator.num_images)
    if evaluator.num_images == 0:
        raise ConfigError(f"--eval_data={config.eval_data}: no image was read")

    metrics = metrics_from_confusion(evaluator.confusion, scheme.class_names)
    metrics.update({
        "parts": scheme.name,
        "checkpoint": checkpoint,
        "model_dir": config.model_dir,
        "saved_model": resolved.saved_model_dir,
        "eval_data": config.eval_data,
        "eval_files": resolved.files,
        "num_images": evaluator.num_images,
        "human_region": resolved.human_region,
        "flip": bool(config.flip),
        "scales": [float(s) for s in config.scales],
        "table_columns": table_columns(scheme),
        "table_row": format_table_row(metrics, scheme),
        "config": _jsonable(dataclasses.asdict(config)),
        "seconds": seconds,
        "images_per_second": evaluator.num_images / max(seconds, 1e-9),
        "first_image_seconds": first_seconds,
        "images_per_second_after_first": (
            (evaluator.num_images - 1) / max(seconds - first_seconds, 1e-9)
            if evaluator.num_images > 1 else None),
        "output_dir": resolved.output_dir,
        "overlays": overlay_paths,
    })
    run_dir.write_text_atomic(os.path.join(resolved.output_dir, METRICS_FILE),
                              run_dir.to_json(metrics, indent=2) + "\n")
    return metrics


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _write_overlay(output_dir, index, element, prediction, class_names) -> str:
    from coseg_tf import visualize  # matplotlib: only when pictures are asked for

    image_id = element["id"].numpy()[0].decode("utf-8")
    safe_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", image_id)
    directory = os.path.join(output_dir, OVERLAY_DIR)
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, f"{index:04d}_{safe_id}.png")
    visualize.save_overlay(element["image"].numpy()[0], element["labels"].numpy()[0],
                           prediction, class_names, path, title=image_id)
    return path
