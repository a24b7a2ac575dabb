r"""One table of performance ratios, each measured side by side in the same run.

Every ratio compares two things timed in the same process, their repetitions
interleaved (A, B, A, B, ... with the order flipped every round) and summarised by their
medians, so that a shared, noisy machine slows both alike. Absolute times are printed
for context only. See docs/PERFORMANCE.md for what each number means and its goal.

  coseg_overhead      coseg train step / the same step computing only the supervised
                      losses (same network pass over all 1 + B_u images, L_humanparts on
                      the labeled images + alpha L_human on the unlabeled ones, same
                      optimizer update; no mining, no L_coseg).            goal <= 1.05
  input_pipeline      images/s the tf.data training stream delivers (decode, merge,
                      augment, batch) / images/s the coseg train step consumes. goal >= 3
  compute_efficiency  achieved FLOP/s of the coseg train step (conv FLOPs counted from
                      the layer shapes, x3 for forward + backward) / FLOP/s of a large
                      dense 3x3 convolution (forward + backward).          goal >= 0.6
  crop_scaling        time per input pixel of a supervised step at crop c, batch 2n /
                      at crop 2c - 1, batch n (161^2 x 8 against 321^2 x 4). goal <= 1.2
  converter_vs_io     images/s of make_tfrecords.convert / images/s of decoding the JPEG,
                      reading the .mat and encoding the two PNGs only.
  converter_workers   images/s of convert with 2 workers / with 1 worker.
  serving             latency of the exported SavedModel (serving_default) / the same
                      serving function in memory under tf.function.        goal <= 1.0
  jit_compile         coseg step with XLA on / off (what fit uses is read from the
                      compiled trainer: Keras 3.15's jit_compile="auto" resolves to off
                      here, so the default step runs without XLA).
  mixed_bfloat16      coseg step under keras.mixed_precision 'mixed_bfloat16' / float32.
  mixed_float16       coseg step under 'mixed_float16' (dynamic loss scaling) / float32.
  step_<method>       each method of the objectives' registry: its train step / the
                      supervised step on the same batch (one training pass of the
                      network over the same B_f + B_u images, L_humanparts + alpha
                      L_human: the coseg_overhead denominator), the same weights and
                      pipeline batch (with strong views and image-level labels where
                      the method reads them). The `supervised` method itself reads the
                      B_f labeled images only. goal <= 2.0 for fixmatch, coseg_fixmatch

The table starts with the CPU (model, the instruction-set flags that decide TF's CPU
kernels, native bfloat16 or not, TF_ENABLE_ONEDNN_OPTS) and ends with a note: the XLA and
mixed-precision rows are CPU figures and say nothing about GPUs.

Also: peak RSS of a train process (a subprocess that only builds the trainer and runs
steps), and step cost against B_u and against the crop size (three points each).

The data are synthetic (tools/make_synthetic.py, VOC-sized images by default) converted
with tools/make_tfrecords.py in a temporary directory, removed at the end.

    python tools/bench.py [--output=runs/bench/bench.json] [--quick] [--paper]
        [--width=0.25 --crop=161 --batch_labeled=1 --batch_unlabeled=7 --reps=5]

--sections restricts the run (e.g. --sections=methods for the step_<method> ratios
alone). --quick runs tiny sizes once (the smoke test); --paper adds one train step of the
paper's setting (width 1.0, 321^2, 1 + 23) in a subprocess: its time and peak RSS.
--memory_estimate only prints a step's memory per precision, estimated from the
activation sizes (`step_memory_estimate`; docs/GPU.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from coseg_tf import export as export_lib  # noqa: E402
from coseg_tf import losses as losses_lib  # noqa: E402
from coseg_tf import masking  # noqa: E402
from coseg_tf import model as model_lib  # noqa: E402
from coseg_tf import objectives  # noqa: E402
from coseg_tf import precision  # noqa: E402
from coseg_tf import trainer as trainer_lib  # noqa: E402
from coseg_tf.layers import DilatedConv2D  # noqa: E402
from coseg_tf.objectives import base as objective_base  # noqa: E402
from pipelines import records, schema, streams  # noqa: E402
from tools import make_synthetic, make_tfrecords, pascal_part  # noqa: E402

_OUTPUT = flags.DEFINE_string("output", "runs/bench/bench.json", "Where the JSON goes.")
_QUICK = flags.DEFINE_bool("quick", False, "Tiny sizes, one repetition (smoke test).")
_PAPER = flags.DEFINE_bool(
    "paper", False, "Also time one train step of the paper's setting (width 1.0, 321^2, "
    "1 + 23) and its peak RSS, in a subprocess (minutes on 2 cores).")
_WIDTH = flags.DEFINE_float("width", 0.25, "Width multiplier of the network.")
_CROP = flags.DEFINE_integer("crop", 161, "Training crop size.")
_BATCH_LABELED = flags.DEFINE_integer("batch_labeled", 1, "Labeled images a step (B_f).")
_BATCH_UNLABELED = flags.DEFINE_integer("batch_unlabeled", 7,
                                        "Unlabeled images a step (B_u).")
_PARTS = flags.DEFINE_string("parts", "all4", "Part scheme (number of classes).")
_REPS = flags.DEFINE_integer("reps", 5, "Timed repetitions of each case (after a warm-up).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 60, "Synthetic images to generate.")
_IMAGE_SIZE = flags.DEFINE_string("image_size", "375,500",
                                  "Synthetic image size H,W (VOC images are ~375x500).")
_DENSE_CONV = flags.DEFINE_string(
    "dense_conv", "4,64,256,256",
    "Reference convolution batch,size,cin,cout (3x3, forward + backward).")
_PIPELINE_BATCHES = flags.DEFINE_integer("pipeline_batches", 8,
                                         "Batches timed per input-pipeline repetition.")
_SCALING = flags.DEFINE_bool("scaling", True,
                             "Measure step cost against B_u and crop size (3 points each).")
_MEMORY_PROBE = flags.DEFINE_bool(
    "memory_probe", False, "Internal: build a coseg trainer at --width/--crop/--batch_*, "
    "run --probe_steps steps on random data and print one JSON line.")
_PROBE_STEPS = flags.DEFINE_integer("probe_steps", 2, "Internal: steps of --memory_probe.")
_PROFILE_STEPS = flags.DEFINE_integer(
    "profile_steps", 0, "Also profile this many coseg steps (tf.profiler): op time per "
    "op type and per layer group, and each group's convolution rate against the dense "
    "reference convolution (0 = no profile).")
_MEMORY_ESTIMATE = flags.DEFINE_bool(
    "memory_estimate", False, "Only print the memory of one train step at --width, "
    "--crop and --batch_labeled + --batch_unlabeled images, per precision, estimated "
    "from the activation sizes (step_memory_estimate), as JSON; e.g. --width=1.0 "
    "--crop=321 --batch_unlabeled=23 for the paper's setting on one GPU.")

# The sections of a bench run (--sections), in the order they run.
SECTIONS = ("training", "methods", "crop_scaling", "converter", "serving", "profile",
            "scaling", "memory")
_SECTIONS = flags.DEFINE_list(
    "sections", list(SECTIONS),
    f"Sections to run, among {', '.join(SECTIONS)} (profile also needs "
    "--profile_steps, scaling --scaling).")
# The methods whose step ratio has a goal (issue 13: a consistency step within twice
# the supervised step on the same batch).
METHOD_RATIO_GOALS = {"fixmatch": "<= 2.0", "coseg_fixmatch": "<= 2.0"}

KB = 1024.0
MB = 1024.0 * 1024.0


@dataclasses.dataclass
class Settings:
    """Sizes of one bench run.

    Args:
      width: network width multiplier.
      crop: training crop size.
      batch_labeled, batch_unlabeled: images a step.
      reps: timed repetitions of every case.
      num_images: synthetic images (converter and pipeline).
      image_size: (H, W) of the synthetic images.
      dense_conv: (batch, size, cin, cout) of the reference convolution.
      pipeline_batches: batches timed per pipeline repetition.
      bu_points, crop_points: the scaling points (B_u at `crop`; crops at B_u).
      serve_size: (H, W) of the serving input.
    """
    width: float
    crop: int
    batch_labeled: int
    batch_unlabeled: int
    reps: int
    num_images: int
    image_size: tuple
    dense_conv: tuple
    pipeline_batches: int
    bu_points: tuple
    crop_points: tuple
    serve_size: tuple

    @property
    def images_per_step(self):
        return self.batch_labeled + self.batch_unlabeled


def _settings_from_flags():
    if _QUICK.value:
        return Settings(width=0.125, crop=65, batch_labeled=1, batch_unlabeled=3, reps=1,
                        num_images=12, image_size=(96, 128), dense_conv=(1, 32, 64, 64),
                        pipeline_batches=2, bu_points=(1, 3), crop_points=(49, 65),
                        serve_size=(96, 128))
    def ints(flag, n):
        try:
            values = tuple(int(v) for v in flag.value.split(","))
        except ValueError:
            values = ()
        if len(values) != n or min(values) < 1:
            raise app.UsageError(f"--{flag.name}={flag.value!r}: need {n} positive "
                                 "integers separated by commas")
        return values
    for flag in (_CROP, _BATCH_LABELED, _BATCH_UNLABELED, _REPS, _NUM_IMAGES,
                 _PIPELINE_BATCHES):
        if flag.value < 1:
            raise app.UsageError(f"--{flag.name} must be >= 1, got {flag.value}")
    if not _WIDTH.value > 0:
        raise app.UsageError(f"--width must be > 0, got {_WIDTH.value}")
    bu = _BATCH_UNLABELED.value
    crop = _CROP.value
    return Settings(width=_WIDTH.value, crop=crop, batch_labeled=_BATCH_LABELED.value,
                    batch_unlabeled=bu, reps=_REPS.value, num_images=_NUM_IMAGES.value,
                    image_size=ints(_IMAGE_SIZE, 2), dense_conv=ints(_DENSE_CONV, 4),
                    pipeline_batches=_PIPELINE_BATCHES.value,
                    bu_points=tuple(sorted({max(1, bu // 2 - 1 + bu % 2), bu, 2 * bu + 1})),
                    crop_points=tuple(sorted({(crop * 4 // 5) | 1, crop, 2 * crop - 1})),
                    serve_size=(375, 500))


# === Timing ===

def _interleaved(cases, reps, warmup=1):
    """{name: {"median", "min", "runs"}} seconds of each callable, repetitions interleaved.

    A callable may return a float: then that is its time (it timed its own steady part).
    Each case is warmed up (traced, compiled) first; then every round runs each case
    once, the order reversed every other round.
    """
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    runs = {name: [] for name in cases}
    names = list(cases)
    for r in range(reps):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            out = cases[name]()
            elapsed = time.perf_counter() - start
            runs[name].append(out if isinstance(out, float) else elapsed)
    return {name: {"median": statistics.median(t), "min": min(t), "runs": t}
            for name, t in runs.items()}


def paired(times, a, b, scale=1.0):
    """Median over rounds of scale * time(a) / time(b) within the round."""
    return statistics.median(scale * x / y for x, y in zip(times[a]["runs"],
                                                           times[b]["runs"]))


def _block(structure):
    return tf.nest.map_structure(lambda t: np.asarray(t), structure)


# === Trainers ===

class SupervisedOnAll(objective_base.Objective):
    """The denominator of coseg_overhead and of the step_<method> ratios: the supervised
    step on the same batch.

    One training pass over the labeled and the unlabeled images (as coseg's), the
    supervised loss L_humanparts on the labeled ones plus alpha L_human on the
    unlabeled ones, so that every image's gradient is computed, and the same
    optimizer update; no target choice, no mining, no L_coseg. (coseg with beta=0 would
    still mine.) An objective like those of `coseg_tf.objectives`, not registered.
    """

    name = "supervised_on_all"
    summary = "bench: L_humanparts + alpha L_human over one pass of both streams"
    needs = streams.StreamNeeds(unlabeled=True)

    def weights(self):
        return {"humanparts": 1.0, "human": losses_lib.DEFAULT_ALPHA}

    def passes(self, training):
        return {"train": objective_base.Pass((objective_base.LABELED,
                                              objective_base.WEAK))}

    def compute(self, outputs, data, *, num_classes, ignore_label, training):
        train = outputs["train"]
        humanparts, _, size = objective_base.labeled_targets(
            train[objective_base.LABELED], data, num_classes=num_classes,
            ignore_label=ignore_label)
        region = objective_base.feature_region(data["unlabeled"]["human_region"], size)
        human = losses_lib.human_loss(logits=train[objective_base.WEAK]["logits"],
                                      region=region)
        return {"humanparts": humanparts, "human": human}, None


def _build_trainer(scheme, width, objective="coseg", mixed_precision="off", seed=0):
    """A compiled trainer as `train_lib.build_trainer` makes it (random init, SGD;
    float16 with its loss-scale optimizer), for an objective or a method name."""
    keras.utils.set_random_seed(seed)
    network = model_lib.build_deeplab_largefov(
        num_classes=scheme.num_classes, width_multiplier=width,
        dtype_policy=precision.policy_name(mixed_precision))
    trainer = trainer_lib.CosegTrainer(network, num_classes=scheme.num_classes,
                                       objective=objective, class_names=scheme.class_names)
    schedule = keras.optimizers.schedules.PolynomialDecay(1e-3, decay_steps=6000,
                                                          end_learning_rate=0.0, power=0.9)
    trainer.compile(optimizer=precision.wrap_optimizer(
        keras.optimizers.SGD(schedule, momentum=0.9), mixed_precision))
    trainer.build()
    trainer.optimizer.build(trainer.network.trainable_variables)
    return trainer


def _step_fn(trainer, data, jit):
    """A callable running one train step on `data` (XLA on or off), blocking."""
    step = tf.function(trainer.train_step, jit_compile=bool(jit))
    return lambda: _block(step(data))


def _random_batch(batch_labeled, batch_unlabeled, crop, num_classes, seed=0):
    """A train element of random images, box-like regions and labels inside them."""
    rng = np.random.default_rng(seed)

    def part(n, with_labels):
        image = rng.uniform(0, 255, [n, crop, crop, 3]).astype(np.float32)
        region = np.zeros([n, crop, crop, 1], np.float32)
        region[:, crop // 5:crop - crop // 5, crop // 4:crop - crop // 4] = 1.0
        out = {"image": tf.constant(image), "human_region": tf.constant(region)}
        if with_labels:
            labels = rng.integers(1, num_classes, [n, crop, crop]).astype(np.int32)
            labels = np.where(region[..., 0] > 0, labels, 0)
            out["labels"] = tf.constant(labels)
        return out
    data = {"labeled": part(batch_labeled, True)}
    if batch_unlabeled:
        data["unlabeled"] = part(batch_unlabeled, False)
    return data


# === FLOPs ===

def tap_positions(layer, height, width):
    """Map positions the per-tap products of a DilatedConv2D read, summed over its taps.

    (9 * height * width for a dense 3x3 convolution; fc6's taps at +-12 on a 21x21 map
    read 9 of 21 rows or columns.)
    """
    rows_off, cols_off = layer._offsets()  # noqa: SLF001 (same package family)
    valid = lambda size, o: max(0, min(size, size - o) - max(-o, 0))  # noqa: E731
    return sum(valid(height, oi) * valid(width, oj) for oi in rows_off for oj in cols_off)


def conv_flops_by_layer(network, crop):
    """{layer name: (nominal, executed)} forward FLOPs of one crop x crop image.

    nominal: 2 * H_out * W_out * kh * kw * cin * cout for every Conv2D and
    DilatedConv2D (zero padding counted, as a dense convolution computes it).
    executed: the same, but for DilatedConv2D only the taps' windows inside the map (what
    its per-tap products compute; `tap_positions`).
    """
    convs = [layer for layer in network.layers
             if isinstance(layer, (keras.layers.Conv2D, DilatedConv2D))]
    probe = keras.Model(network.inputs, [layer.output for layer in convs])
    shapes = [o.shape for o in probe({"image": tf.zeros([1, crop, crop, 3]),
                                      "human_region": tf.ones([1, crop, crop, 1])})]
    flops = {}
    for layer, shape in zip(convs, shapes):
        kh, kw, cin, cout = layer.kernel.shape
        h, w = int(shape[1]), int(shape[2])
        full = 2.0 * h * w * kh * kw * cin * cout
        if isinstance(layer, DilatedConv2D):
            flops[layer.name] = (full, 2.0 * tap_positions(layer, h, w) * cin * cout)
        else:
            flops[layer.name] = (full, full)
    return flops


def conv_flops(network, crop):
    """(nominal, executed) forward FLOPs of one crop x crop image through the convs
    (the sums of `conv_flops_by_layer`)."""
    flops = conv_flops_by_layer(network, crop).values()
    return sum(n for n, _ in flops), sum(e for _, e in flops)


def step_memory_estimate(width, crop, images, num_classes):
    """Bytes of one train step, estimated from the activation sizes, per precision.

    The forward pass keeps for the backward pass (roughly) the output of every layer;
    they are counted at each layer's compute dtype under the policy (float32: 4 bytes;
    mixed: 2 bytes, except the preprocessing, the masking layer and fc8, float32).
    Added: a second copy of the two dropout outputs (their masks), and fc6's inputs
    as the backward pass keeps them: under "taps" the 9 shifted windows of its input
    (the parts inside the map), under "conv" its SpaceToBatch copy. The variables
    count 3 times in float32 (weights, gradients, SGD momentum), plus their cast copies
    in the compute dtype under a mixed policy. Not counted: the transient gradient of
    the activations (about the two largest layer outputs at a time), convolution
    workspaces (cuDNN), the allocator's slack, the input batch. Shapes come from one
    float32 forward pass of a single crop x crop image.

    Returns:
      {mixed_precision: {"activations_per_image_mb", "activations_mb", "variables_mb",
      "total_mb"}} for every choice of precision.MIXED_PRECISION.
    """
    keras.utils.set_random_seed(0)
    network = model_lib.build_deeplab_largefov(num_classes=num_classes,
                                               width_multiplier=width, fc6_impl="taps",
                                               dtype_policy="float32")
    layers = [layer for layer in network.layers
              if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(network.inputs, [layer.output for layer in layers])
    outputs = probe({"image": tf.zeros([1, crop, crop, 3]),
                     "human_region": tf.ones([1, crop, crop, 1])})
    elements = {layer.name: int(np.prod(o.shape)) for layer, o in zip(layers, outputs)}
    fc6 = network.get_layer("fc6")
    fc6_input = [o for layer, o in zip(layers, outputs) if layer.name == "pool5a"][0]
    h, w, cin = (int(d) for d in fc6_input.shape[1:])
    fc6_windows = tap_positions(fc6, h, w) * cin
    params = network.count_params()
    result = {}
    for choice in precision.MIXED_PRECISION:
        policy = keras.DTypePolicy(precision.policy_name(choice))
        compute = np.dtype(policy.compute_dtype).itemsize
        float32_layers = {"preprocess", "masking", "fc8"}
        per_image = sum(n * (4 if name in float32_layers else compute)
                        for name, n in elements.items())
        per_image += (elements["drop6"] + elements["drop7"]) * compute  # dropout masks
        per_image += fc6_windows * compute
        variables = params * 4 * 3 + (params * compute if compute != 4 else 0)
        total = per_image * images + variables
        result[choice] = {"activations_per_image_mb": per_image / MB,
                          "activations_mb": per_image * images / MB,
                          "variables_mb": variables / MB, "total_mb": total / MB}
    return result


def _dense_conv_case(batch, size, cin, cout):
    """(callable, FLOPs) of a 3x3 'same' convolution, forward + backward to x and kernel."""
    x = tf.Variable(tf.random.normal([batch, size, size, cin]))
    kernel = tf.Variable(tf.random.normal([3, 3, cin, cout], stddev=0.05))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y = tf.nn.conv2d(x, kernel, 1, "SAME")
            loss = tf.reduce_sum(y)
        return tape.gradient(loss, [x, kernel])

    return (lambda: _block(step())), 3 * 2.0 * batch * size * size * 9 * cin * cout


def _dense_rate(s):
    """GFLOP/s of the reference dense convolution alone (when the training section,
    which measures it beside the step, is not run)."""
    fn, flops = _dense_conv_case(*s.dense_conv)
    t = _interleaved({"dense_conv": fn}, s.reps)
    return flops / t["dense_conv"]["median"] / 1e9


# === Data ===

def _make_data(tmp, s):
    """Synthetic source + TFRecords in `tmp`; returns (source dir, train ids, pattern)."""
    source = os.path.join(tmp, "source")
    make_synthetic.generate(output_dir=source, num_images=s.num_images,
                            image_size=s.image_size, val_fraction=0.0)
    out = os.path.join(tmp, "tfrecords")
    make_tfrecords.convert(pascal_part_dir=os.path.join(source, make_synthetic.PARTS_DIR),
                           images_dir=os.path.join(source, make_synthetic.IMAGES_DIR),
                           output_dir=out, split_name="train", num_shards=2, progress=False)
    with open(os.path.join(source, make_synthetic.SETS_DIR, "train.txt")) as f:
        ids = [line.strip() for line in f if line.strip()]
    return source, ids, os.path.join(out, "train-*")


def _train_ds(pattern, scheme, labeled_ids, s, crop=None, batch_unlabeled=None,
              needs=streams.StreamNeeds(), batch_labeled=None):
    ds = streams.train_dataset(
        pattern, needs=needs, scheme=scheme, labeled_ids=labeled_ids,
        batch_labeled=batch_labeled or s.batch_labeled,
        batch_unlabeled=batch_unlabeled or s.batch_unlabeled, crop_size=crop or s.crop,
        cache_labeled=True, seed=0)
    return ds.map(lambda d: {k: {n: t for n, t in v.items() if n != "id"}
                             for k, v in d.items()})


def _first(ds):
    return next(iter(ds))


def _pipeline_case(ds, batches, warm=4):
    """A callable timing `batches` batches of `ds` (returns its own time, seconds).

    A fresh iterator each repetition: its buffers start empty, so the timed batches
    come at the rate the stream produces them, not from buffers filled while the other
    cases ran. The first `warm` batches (start-up) are not timed.
    """
    def run():
        it = iter(ds)
        for _ in range(warm):
            _block(next(it))
        start = time.perf_counter()
        for _ in range(batches):
            _block(next(it))
        elapsed = time.perf_counter() - start
        del it
        return elapsed
    return run


# === Sections ===

def measure_training(s, scheme, pattern, labeled_ids):
    """coseg_overhead, input_pipeline, compute_efficiency, jit_compile, mixed_bfloat16,
    mixed_float16."""
    data = _first(_train_ds(pattern, scheme, labeled_ids, s))
    coseg = _build_trainer(scheme, s.width)
    fit_jit = coseg.jit_compile is True  # what keras' fit uses ("auto" resolved)
    supervised = _build_trainer(scheme, s.width, objective=SupervisedOnAll())
    other_jit = _build_trainer(scheme, s.width)
    bf16 = _build_trainer(scheme, s.width, mixed_precision="bfloat16")
    fp16 = _build_trainer(scheme, s.width, mixed_precision="float16")
    dense, dense_flops = _dense_conv_case(*s.dense_conv)

    pipeline_ds = _train_ds(pattern, scheme, labeled_ids, s)
    # The same stream on one thread: what one CPU core delivers (docs/GPU.md sizes the
    # cores a GPU needs from it).
    one_thread = tf.data.Options()
    one_thread.threading.private_threadpool_size = 1
    one_thread.threading.max_intra_op_parallelism = 1
    pipeline = _pipeline_case(pipeline_ds, s.pipeline_batches)
    pipeline_one_core = _pipeline_case(pipeline_ds.with_options(one_thread),
                                       s.pipeline_batches)

    coseg_step = _step_fn(coseg, data, fit_jit)
    other = "coseg_jit_" + ("off" if fit_jit else "on")
    # Three groups, each interleaved; every ratio is the median over rounds of the
    # ratio within a round (paired: a load change between rounds cancels).
    t = _interleaved({"coseg": coseg_step,
                      "supervised_on_all": _step_fn(supervised, data, fit_jit)},
                     2 * s.reps)
    t2 = _interleaved({"coseg": coseg_step, other: _step_fn(other_jit, data, not fit_jit),
                       "dense_conv": dense, "pipeline": pipeline,
                       "pipeline_one_core": pipeline_one_core}, s.reps)
    t3 = _interleaved({"coseg": coseg_step,
                       "coseg_mixed_bfloat16": _step_fn(bf16, data, fit_jit),
                       "coseg_mixed_float16": _step_fn(fp16, data, fit_jit)},
                      max(1, min(2, s.reps)))
    n = s.images_per_step
    nominal, executed = conv_flops(coseg.network, s.crop)
    step_flops = 3 * nominal * n

    pipe_rate = s.pipeline_batches * n / t2["pipeline"]["median"]
    pipe_rate_one_core = s.pipeline_batches * n / t2["pipeline_one_core"]["median"]
    step_rate = n / t2["coseg"]["median"]
    jit_ratio = paired(t2, "coseg", other) if fit_jit else paired(t2, other, "coseg")
    results = {
        "coseg_overhead": (paired(t, "coseg", "supervised_on_all"), "<= 1.05"),
        # (images/batches / pipeline time) / (images / step time)
        "input_pipeline": (paired(t2, "coseg", "pipeline", s.pipeline_batches), ">= 3"),
        # (step FLOPs / step time) / (dense FLOPs / dense time)
        "compute_efficiency": (paired(t2, "dense_conv", "coseg", step_flops / dense_flops),
                               ">= 0.6"),
        "jit_compile": (jit_ratio, None),
        "mixed_bfloat16": (paired(t3, "coseg_mixed_bfloat16", "coseg"), None),
        "mixed_float16": (paired(t3, "coseg_mixed_float16", "coseg"), None),
    }
    t = {"overhead_pair": t, "compute_group": t2, "mixed_precision_group": t3}
    step = t2["coseg"]["median"]

    # Correctness of XLA and bfloat16: losses on the same weights and batch, dropout off.
    check = _build_trainer(scheme, s.width, seed=1)
    check_bf16 = _build_trainer(scheme, s.width, seed=1, mixed_precision="bfloat16")
    check_fp16 = _build_trainer(scheme, s.width, seed=1, mixed_precision="float16")
    check_bf16.network.set_weights(check.network.get_weights())
    check_fp16.network.set_weights(check.network.get_weights())
    losses = {}
    for name, trainer, jit in (("float32", check, False), ("float32_xla", check, True),
                               ("mixed_bfloat16", check_bf16, fit_jit),
                               ("mixed_float16", check_fp16, fit_jit)):
        fn = tf.function(lambda d, tr=trainer: tr.compute_losses(d, training=False)[0],
                         jit_compile=jit)
        losses[name] = {k: float(v) for k, v in fn(data).items()}
    bf16_logs = {k: float(v) for k, v in _step_fn(bf16, data, fit_jit)().items()}
    fp16_logs = {k: float(v) for k, v in _step_fn(fp16, data, fit_jit)().items()}

    def rel(a, b):
        return max(abs(losses[a][k] - losses[b][k]) / max(abs(losses[b][k]), 1e-12)
                   for k in losses[b])

    detail = {
        "times": t, "fit_jit_compile": fit_jit,
        "images_per_step": n,
        "pipeline_images_per_s": pipe_rate, "step_images_per_s": step_rate,
        "pipeline_images_per_s_one_core": pipe_rate_one_core,
        "model_forward_gflops_per_image": nominal / 1e9,
        "model_forward_gflops_per_image_executed": executed / 1e9,
        "step_gflops": step_flops / 1e9,
        "step_gflop_per_s": step_flops / step / 1e9,
        "step_gflop_per_s_executed": 3 * executed * n / step / 1e9,
        "dense_conv": {"shape": list(s.dense_conv), "gflops": dense_flops / 1e9,
                       "gflop_per_s": dense_flops / t2["dense_conv"]["median"] / 1e9},
        "losses_eval_mode": losses,
        "xla_vs_float32_max_rel_diff": rel("float32_xla", "float32"),
        "bfloat16_vs_float32_max_rel_diff": rel("mixed_bfloat16", "float32"),
        "bfloat16_train_step_logs": bf16_logs,
        "bfloat16_losses_finite": all(math.isfinite(v) for v in
                                      list(bf16_logs.values())
                                      + list(losses["mixed_bfloat16"].values())),
        "float16_vs_float32_max_rel_diff": rel("mixed_float16", "float32"),
        "float16_train_step_logs": fp16_logs,
        "float16_losses_finite": all(math.isfinite(v) for v in
                                     list(fp16_logs.values())
                                     + list(losses["mixed_float16"].values())),
        "float16_loss_scale": float(fp16.optimizer.scale_loss(1.0)),
    }
    return results, detail, fit_jit


def _for_method(data, needs):
    """The part of a pipeline element a method with `needs` reads (its pipeline would
    build no more: image-level labels and strong views only where they are read)."""
    if not needs.unlabeled:
        return {"labeled": data["labeled"]}
    keys = ["image", "human_region"]
    if needs.image_labels:
        keys.append("image_labels")
    keys += [k for pair in streams.STRONG_VIEW_KEYS[:needs.strong_views] for k in pair]
    return {"labeled": data["labeled"],
            "unlabeled": {k: data["unlabeled"][k] for k in keys}}


def measure_methods(s, scheme, pattern, labeled_ids, fit_jit):
    """step_<method>: each registered method's step / the supervised step on the batch.

    One pipeline batch holding everything any method reads (image-level labels, two
    strong views); each method gets the part it reads. The same initial weights for
    every trainer; the steps interleaved (`_interleaved`), each ratio the median over
    rounds of the ratio within a round.
    """
    everything = streams.StreamNeeds(unlabeled=True, image_labels=True,
                                     strong_views=len(streams.STRONG_VIEW_KEYS))
    data = _first(_train_ds(pattern, scheme, labeled_ids, s, needs=everything))
    denominator = SupervisedOnAll()
    cases = {denominator.name: _step_fn(_build_trainer(scheme, s.width, denominator),
                                        _for_method(data, denominator.needs), fit_jit)}
    for name in objectives.METHODS:
        trainer = _build_trainer(scheme, s.width, objective=name)
        cases[name] = _step_fn(trainer, _for_method(data, trainer.objective.needs), fit_jit)
    t = _interleaved(cases, s.reps)
    ratios = {f"step_{name}": (paired(t, name, denominator.name),
                               METHOD_RATIO_GOALS.get(name))
              for name in objectives.METHODS}
    return ratios, {"times": t, "images_per_step": s.images_per_step,
                    "denominator": denominator.summary}


# Op categories (bench_torch.op_category) that compute a layer's convolution FLOPs.
CONV_CATEGORIES = ("conv forward", "conv backward", "matmul (fc6 taps)")


def measure_profile(s, scheme, fit_jit, dense_gflop_per_s, steps):
    """Where the coseg step's time goes: op time by layer group, conv rate per group.

    For each layer group (block1 ... fc8, the losses, the optimizer, "other": the
    coseg mining and the rest) the op time of the profiled steps, split into its
    convolution ops (forward, both backward ops, fc6's per-tap MatMuls) and the rest;
    the group's conv FLOPs (forward x3, as compute_efficiency counts them) over its
    conv op time, divided by the dense reference convolution's rate. Op times of the
    two inter-op threads overlap: shares are of the summed op time, not of the step.
    """
    from tools import bench_torch

    trainer = _build_trainer(scheme, s.width)
    data = _random_batch(s.batch_labeled, s.batch_unlabeled, s.crop, scheme.num_classes)
    step = _step_fn(trainer, data, fit_jit)
    step()
    step()
    prof = bench_torch.profile_tf(step, steps)
    flops = {}
    for name, (nominal, _) in conv_flops_by_layer(trainer.network, s.crop).items():
        group = bench_torch.tf_layer_group(name)
        flops[group] = flops.get(group, 0.0) + 3 * nominal * s.images_per_step
    total = sum(prof["groups"].values())
    rows = []
    for group, seconds in sorted(prof["groups"].items(), key=lambda kv: -kv[1]):
        ops = prof["group_ops"][group]
        conv_s = sum(v for op, v in ops.items()
                     if bench_torch.op_category(op) in CONV_CATEGORIES)
        rate = flops.get(group, 0.0) / conv_s / 1e9 if conv_s and group in flops else None
        top = sorted(ops.items(), key=lambda kv: -kv[1])[:4]
        rows.append({"group": group, "op_s": seconds, "share": seconds / total,
                     "conv_op_s": conv_s, "other_op_s": seconds - conv_s,
                     "conv_gflop_per_s": rate,
                     "conv_rate_vs_dense": rate / dense_gflop_per_s if rate else None,
                     "top_ops": {op: v for op, v in top}})
    categories = {}
    for op, v in prof["ops"].items():
        cat = bench_torch.op_category(op)
        categories[cat] = categories.get(cat, 0.0) + v
    return {"steps": steps, "op_s_per_step": total, "groups": rows,
            "categories": dict(sorted(categories.items(), key=lambda kv: -kv[1])),
            "top_ops": dict(sorted(prof["ops"].items(), key=lambda kv: -kv[1])[:15])}


def format_profile(profile):
    """The printed profile: one line per layer group."""
    lines = [f"profile of {profile['steps']} coseg steps: {profile['op_s_per_step']:.3f} s "
             "of op time per step",
             f"{'group':<10} {'op s':>7} {'share':>6} {'conv s':>7} {'other s':>8} "
             f"{'conv GFLOP/s':>12} {'/ dense':>7}  top ops"]
    for row in profile["groups"]:
        rate = f"{row['conv_gflop_per_s']:.1f}" if row["conv_gflop_per_s"] else "-"
        vs = f"{row['conv_rate_vs_dense']:.2f}" if row["conv_rate_vs_dense"] else "-"
        top = ", ".join(f"{op} {v:.3f}" for op, v in row["top_ops"].items())
        lines.append(f"{row['group']:<10} {row['op_s']:>7.3f} {row['share']:>6.1%} "
                     f"{row['conv_op_s']:>7.3f} {row['other_op_s']:>8.3f} {rate:>12} "
                     f"{vs:>7}  {top}")
    lines.append("by category: " + ", ".join(f"{k} {v:.3f}"
                                             for k, v in profile["categories"].items()))
    return "\n".join(lines)


def measure_crop_scaling(s, scheme, pattern, labeled_ids, fit_jit):
    """Per-pixel time of a supervised step at (crop, 2n) over (2 crop - 1, n)."""
    n_large = max(1, s.images_per_step // 2)
    n_small = 2 * n_large
    big = 2 * s.crop - 1
    trainer = _build_trainer(scheme, s.width, objective="supervised")
    labeled_only = streams.StreamNeeds(unlabeled=False)
    small_data = _first(_train_ds(pattern, scheme, labeled_ids, s, needs=labeled_only,
                                  batch_labeled=n_small))
    big_data = _first(_train_ds(pattern, scheme, labeled_ids, s, crop=big,
                                needs=labeled_only, batch_labeled=n_large))
    t = _interleaved({"small": _step_fn(trainer, small_data, fit_jit),
                      "large": _step_fn(trainer, big_data, fit_jit)}, s.reps)
    per_px_small = t["small"]["median"] / (n_small * s.crop ** 2)
    per_px_large = t["large"]["median"] / (n_large * big ** 2)
    ratio = paired(t, "small", "large", (n_large * big ** 2) / (n_small * s.crop ** 2))
    return {"crop_scaling": (ratio, "<= 1.2")}, {
        "times": t, "small": [s.crop, n_small], "large": [big, n_large],
        "us_per_pixel_small": per_px_small * 1e6, "us_per_pixel_large": per_px_large * 1e6}


def measure_step_scaling(s, scheme, fit_jit):
    """Coseg step seconds at three B_u (crop fixed) and three crops (B_u fixed)."""
    trainer = _build_trainer(scheme, s.width)
    cases = {}
    for bu in s.bu_points:
        data = _random_batch(s.batch_labeled, bu, s.crop, scheme.num_classes)
        cases[f"bu={bu},crop={s.crop}"] = _step_fn(trainer, data, fit_jit)
    for crop in s.crop_points:
        if crop == s.crop:
            continue
        data = _random_batch(s.batch_labeled, s.batch_unlabeled, crop, scheme.num_classes)
        cases[f"bu={s.batch_unlabeled},crop={crop}"] = _step_fn(trainer, data, fit_jit)
    t = _interleaved(cases, max(1, min(3, s.reps)))
    bu_rows = [{"batch_unlabeled": bu, "crop": s.crop,
                "step_s": t[f"bu={bu},crop={s.crop}"]["median"]} for bu in s.bu_points]
    crop_rows = [{"batch_unlabeled": s.batch_unlabeled, "crop": c,
                  "step_s": t[f"bu={s.batch_unlabeled},crop={c}"]["median"]}
                 for c in s.crop_points]
    for row in bu_rows + crop_rows:
        pixels = (s.batch_labeled + row["batch_unlabeled"]) * row["crop"] ** 2
        row["us_per_pixel"] = row["step_s"] / pixels * 1e6
    return {"batch_unlabeled": bu_rows, "crop": crop_rows}


def converter_probe(source, ids, reps, tmp):
    """Prints one JSON line: converter and I/O-only timings (run by `measure_converter`).

    Runs in a subprocess started with `python -c`: the converter's 'spawn' workers
    re-import the parent's __main__ script, and this one imports TensorFlow, which
    would add seconds to every worker start that `tools/make_tfrecords.py` does not pay.
    """
    dirs = dict(pascal_part_dir=os.path.join(source, make_synthetic.PARTS_DIR),
                images_dir=os.path.join(source, make_synthetic.IMAGES_DIR))
    masks = {}
    for image_id in ids:  # the PNG inputs, computed once (untimed)
        out = pascal_part.convert_one(image_id, **dirs)
        if isinstance(out, pascal_part.Converted):
            masks[image_id] = (out.person_mask, out.parts_fine)

    def io_only():
        from PIL import Image
        import scipy.io
        for image_id in ids:
            with Image.open(os.path.join(dirs["images_dir"], image_id + ".jpg")) as im:
                im.load()
            scipy.io.loadmat(os.path.join(dirs["pascal_part_dir"], image_id + ".mat"))
            if image_id in masks:
                for mask in masks[image_id]:
                    records.encode_png(mask)

    counter = [0]

    def convert(workers):
        def run():
            counter[0] += 1
            out = os.path.join(tmp, f"convert-{counter[0]}")
            make_tfrecords.convert(output_dir=out, split_name="train", num_shards=2,
                                   num_workers=workers, progress=False, **dirs)
            shutil.rmtree(out, ignore_errors=True)
        return run

    t = _interleaved({"io_only": io_only, "convert_1": convert(1), "convert_2": convert(2)},
                     reps)
    print(json.dumps(t), flush=True)


def measure_converter(s, tmp, source, ids):
    """converter_vs_io and converter_workers on the synthetic source (a subprocess)."""
    code = ("import sys, json; from tools import bench; "
            "bench.converter_probe(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), "
            "sys.argv[4])")
    reps = max(1, min(3, s.reps))
    t = _json_subprocess([sys.executable, "-c", code, source, json.dumps(ids), str(reps),
                          tmp])
    rate = {k: len(ids) / v["median"] for k, v in t.items()}
    return {"converter_vs_io": (rate["convert_1"] / rate["io_only"], None),
            "converter_workers": (rate["convert_2"] / rate["convert_1"], None)}, {
        "times": t, "images": len(ids), "images_per_s": rate,
        "note": "convert_2 includes starting its 2-process pool (spawn) every run"}


def measure_serving(s, tmp, scheme, fit_jit):
    """Latency of the exported SavedModel / the same serving function in memory."""
    keras.utils.set_random_seed(0)
    network = model_lib.build_deeplab_largefov(num_classes=scheme.num_classes,
                                               width_multiplier=s.width)
    info = {"class_names": list(scheme.class_names), "num_classes": scheme.num_classes,
            "width_multiplier": s.width, "parts": scheme.name}
    path = export_lib.export_saved_model(network, info, os.path.join(tmp, "export"))
    served = tf.saved_model.load(path).signatures[export_lib.DEFAULT_SIGNATURE]
    names = os.path.join(tmp, "class_names.txt")
    with open(names, "w") as f:
        f.write("".join(n + "\n" for n in scheme.class_names))
    in_memory = export_lib.SegmentationServer(network, names)
    h, w = s.serve_size
    image = tf.constant(np.random.default_rng(0).integers(0, 256, [1, h, w, 3], np.uint8))
    boxes = tf.constant([[[0.1, 0.2, 0.9, 0.7]]], tf.float32)
    a = served(image=image, human_boxes=boxes)
    b = in_memory.serve_boxes(image, boxes)
    agree = float(np.max(np.abs(a["probabilities"].numpy() - b["probabilities"].numpy())))
    t = _interleaved({
        "saved_model": lambda: _block(served(image=image, human_boxes=boxes)),
        "in_memory": lambda: _block(in_memory.serve_boxes(image, boxes)),
    }, max(3, 2 * s.reps))
    return {"serving": (paired(t, "saved_model", "in_memory"), "<= 1.0")}, {
        "times": t, "input": [1, h, w, 3], "max_abs_prob_diff": agree}


# === Memory (a subprocess per setting) ===

def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / KB
    return float("nan")


def memory_probe(width, crop, batch_labeled, batch_unlabeled, steps):
    """One JSON line: RSS after building, peak RSS, first and later step seconds."""
    scheme = schema.get_scheme(_PARTS.value)
    trainer = _build_trainer(scheme, width)
    data = _random_batch(batch_labeled, batch_unlabeled, crop, scheme.num_classes)
    fit_jit = trainer.jit_compile is True
    step = _step_fn(trainer, data, fit_jit)
    built = _rss_mb()
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    times = []
    for _ in range(max(0, steps - 1)):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KB  # KiB on Linux
    print(json.dumps({"width": width, "crop": crop, "batch": [batch_labeled, batch_unlabeled],
                      "jit_compile": fit_jit, "rss_after_build_mb": built,
                      "peak_rss_mb": peak, "first_step_s": first,
                      "step_s": statistics.median(times) if times else None}), flush=True)


def _json_subprocess(cmd):
    """The last JSON line a subprocess prints; RuntimeError with its stderr if it fails."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=repo,
                          check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed (exit {proc.returncode}):"
                           f"\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def _run_probe(width, crop, batch_labeled, batch_unlabeled, steps):
    return _json_subprocess([
        sys.executable, os.path.abspath(__file__), "--memory_probe", f"--width={width}",
        f"--crop={crop}", f"--batch_labeled={batch_labeled}",
        f"--batch_unlabeled={batch_unlabeled}", f"--probe_steps={steps}",
        f"--parts={_PARTS.value}"])


# === Report ===

def _met(value, goal):
    if goal is None:
        return None
    op, bound = goal.split()
    return value <= float(bound) if op == "<=" else value >= float(bound)


def cpu_report(cpuinfo_text=None):
    """The CPU the ratios were measured on: model, the flags that decide TF's CPU
    kernels (those of precision.REPORTED_CPU_FLAGS it has), native bfloat16, oneDNN."""
    info = precision.read_cpuinfo(cpuinfo_text)
    flags = precision.cpu_flags(cpuinfo_text)
    return {"model": info.get("model name", "unknown"),
            "flags": [f for f in precision.REPORTED_CPU_FLAGS if f in flags],
            "native_bfloat16": precision.has_native_bfloat16(flags),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset)")}


def format_table(report):
    """The printed table: the CPU, one line per ratio, the note on CPU figures."""
    cpu = report["cpu"]
    lines = [f"CPU: {cpu['model']}, {report['cpu_count']} cores; flags "
             f"{' '.join(cpu['flags']) or '(none of ' + ' '.join(precision.REPORTED_CPU_FLAGS) + ')'}"
             f"; native bfloat16: {'yes' if cpu['native_bfloat16'] else 'no'}; "
             f"TF_ENABLE_ONEDNN_OPTS={cpu['TF_ENABLE_ONEDNN_OPTS']}",
             f"{'ratio':<20} {'value':>8} {'goal':>8} {'met':>4}  what"]
    for row in report["ratios"]:
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        lines.append(f"{row['name']:<20} {row['value']:>8.3f} {row['goal'] or '-':>8} "
                     f"{met:>4}  {row['what']}")
    lines.append(f"note: {CPU_NOTE}")
    return "\n".join(lines)


def _what(name):
    """The description of a ratio in the printed table."""
    if name.startswith("step_"):
        return (f"{name[len('step_'):]} step / supervised step on the same batch "
                "(one pass over B_f + B_u)")
    return _WHAT[name]


_WHAT = {
    "coseg_overhead": "coseg step / step with L_humanparts + a L_human only (same pass)",
    "input_pipeline": "tf.data images/s / coseg-step images/s",
    "compute_efficiency": "step FLOP/s (conv FLOPs x3) / dense 3x3 conv FLOP/s",
    "crop_scaling": "supervised step time per pixel: c^2 x 2n / (2c-1)^2 x n",
    "converter_vs_io": "convert images/s / (JPEG decode + loadmat + 2 PNG encodes) images/s",
    "converter_workers": "convert images/s, 2 workers / 1 worker",
    "serving": "SavedModel serving_default latency / in-memory tf.function",
    "jit_compile": "coseg step time, XLA on / off",
    "mixed_bfloat16": "coseg step time, mixed_bfloat16 / float32",
    "mixed_float16": "coseg step time, mixed_float16 (loss scaling) / float32",
}
# Printed under the table: the precision and XLA rows measure this CPU only.
CPU_NOTE = ("jit_compile, mixed_bfloat16 and mixed_float16 are CPU figures: they say "
            "nothing about GPUs (docs/GPU.md). Native bfloat16 needs AVX512-BF16 or "
            "AMX-BF16; without them TensorFlow emulates it.")


def run_bench(s, paper=False):
    """Runs every section; returns the report dict (also what goes to the JSON)."""
    start = time.perf_counter()
    scheme = schema.get_scheme(_PARTS.value)
    report = {"settings": dataclasses.asdict(s), "parts": scheme.name,
              "load_average_start": list(os.getloadavg()), "cpu_count": os.cpu_count(),
              "cpu": cpu_report(),
              "tensorflow": tf.__version__, "keras": keras.__version__}
    ratios, details = {}, {}
    sections = set(_SECTIONS.value)
    unknown = sections - set(SECTIONS)
    if unknown:
        raise app.UsageError(f"--sections: unknown {sorted(unknown)}; choose among "
                             f"{', '.join(SECTIONS)}")
    tmp = tempfile.mkdtemp(prefix="coseg_bench_")
    try:
        source, ids, pattern = _make_data(tmp, s)
        labeled_ids = streams.select_labeled_ids(ids, num_labeled=min(10, len(ids)), seed=0)
        # What keras' fit uses ("auto" resolved), read from a compiled trainer.
        fit_jit = _build_trainer(scheme, s.width).jit_compile is True
        if "training" in sections:
            logging.info("bench: training section")
            r, details["training"], fit_jit = measure_training(s, scheme, pattern,
                                                               labeled_ids)
            ratios.update(r)
        if "methods" in sections:
            logging.info("bench: each method's step")
            r, details["methods"] = measure_methods(s, scheme, pattern, labeled_ids, fit_jit)
            ratios.update(r)
        if "crop_scaling" in sections:
            logging.info("bench: crop scaling")
            r, details["crop_scaling"] = measure_crop_scaling(s, scheme, pattern,
                                                              labeled_ids, fit_jit)
            ratios.update(r)
        if "converter" in sections:
            logging.info("bench: converter")
            r, details["converter"] = measure_converter(s, tmp, source, ids)
            ratios.update(r)
        if "serving" in sections:
            logging.info("bench: serving")
            r, details["serving"] = measure_serving(s, tmp, scheme, fit_jit)
            ratios.update(r)
        if "profile" in sections and _PROFILE_STEPS.value > 0:
            logging.info("bench: profile")
            dense = (details["training"]["dense_conv"]["gflop_per_s"]
                     if "training" in details
                     else _dense_rate(s))
            report["profile"] = measure_profile(s, scheme, fit_jit, dense,
                                                _PROFILE_STEPS.value)
        if "scaling" in sections and _SCALING.value:
            logging.info("bench: step scaling")
            report["step_scaling"] = measure_step_scaling(s, scheme, fit_jit)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "memory" in sections:
        logging.info("bench: memory")
        memory = {"cpu": _run_probe(s.width, s.crop, s.batch_labeled, s.batch_unlabeled, 2)}
        if paper:
            memory["paper"] = _run_probe(1.0, 321, 1, 23, 2)
        report["memory"] = memory
    report["ratios"] = [{"name": name, "value": value, "goal": goal,
                         "met": _met(value, goal), "what": _what(name)}
                        for name, (value, goal) in ratios.items()]
    report["details"] = details
    report["load_average_end"] = list(os.getloadavg())
    report["seconds"] = time.perf_counter() - start
    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if _MEMORY_ESTIMATE.value:
        scheme = schema.get_scheme(_PARTS.value)
        images = _BATCH_LABELED.value + _BATCH_UNLABELED.value
        estimate = step_memory_estimate(_WIDTH.value, _CROP.value, images,
                                        scheme.num_classes)
        print(json.dumps({"width": _WIDTH.value, "crop": _CROP.value, "images": images,
                          "estimate": estimate}, indent=1))
        return 0
    if _MEMORY_PROBE.value:
        memory_probe(_WIDTH.value, _CROP.value, _BATCH_LABELED.value,
                     _BATCH_UNLABELED.value, _PROBE_STEPS.value)
        return 0
    s = _settings_from_flags()
    report = run_bench(s, paper=_PAPER.value)
    print(format_table(report))
    t = report["details"].get("training")
    m = report.get("memory", {})
    if t is not None:
        print(f"\ninput pipeline {t['pipeline_images_per_s']:.1f} images/s on "
              f"{report['cpu_count']} cores, {t['pipeline_images_per_s_one_core']:.1f} on "
              f"one thread ({s.crop}^2 crops of {s.image_size[0]}x{s.image_size[1]} "
              "images)")
        print(f"coseg step {t['times']['compute_group']['coseg']['median']:.3f} s for "
              f"{t['images_per_step']} images at {s.crop}^2, width {s.width} (XLA "
              f"{'on' if t['fit_jit_compile'] else 'off'}, as fit)"
              + (f"; peak RSS {m['cpu']['peak_rss_mb']:.0f} MB" if "cpu" in m else ""))
    if "methods" in report["details"]:
        times = report["details"]["methods"]["times"]
        print(f"\nstep seconds (median) at {s.crop}^2, {s.batch_labeled} + "
              f"{s.batch_unlabeled} images, width {s.width}: " + ", ".join(
                  f"{name} {v['median']:.3f}" for name, v in times.items()))
    if "paper" in m:
        print(f"paper setting (width 1.0, 321^2, 1 + 23): step {m['paper']['step_s']:.1f} s, "
              f"first step {m['paper']['first_step_s']:.1f} s, peak RSS "
              f"{m['paper']['peak_rss_mb']:.0f} MB")
    if "profile" in report:
        print(format_profile(report["profile"]))
    for key, rows in report.get("step_scaling", {}).items():
        print(f"step vs {key}: " + ", ".join(
            f"(B_u {r['batch_unlabeled']}, {r['crop']}^2) {r['step_s']:.3f} s"
            for r in rows))
    print(f"load average {report['load_average_start']} -> {report['load_average_end']}; "
          f"{report['seconds']:.0f} s")
    directory = os.path.dirname(_OUTPUT.value)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(_OUTPUT.value, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"wrote {_OUTPUT.value}")
    return 0


if __name__ == "__main__":
    app.run(main)
