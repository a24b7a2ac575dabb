r"""Side-by-side CPU timings: dilated `keras.layers.Conv2D` against `DilatedConv2D`.

Prints forward+backward seconds of
  1. fc6 alone (3x3, dilation 12) on 21x21 (batch 8) and 41x41 (batch 4) maps, at the
     widths of width_multiplier 0.25 (128 -> 256 channels) and 1.0 (512 -> 1024);
  2. one conv5 layer (3x3, dilation 2) on the same maps, 0.25 and 1.0 widths;
  3. the whole network (width 0.25), a train-step-like forward (dropout on) + backward
     to all trainable variables, on 161x161 crops (batch 8) and 321x321 crops (batch 4),
     with fc6 as built (`DilatedConv2D`) and as a dilated Conv2D; and the time
     per input pixel at 161^2 over that at 321^2 (1.0 = small crops cost no more per
     pixel).

Whether TensorFlow's oneDNN rewrite is on changes every number here (TF 2.21 leaves it
OFF on this AMD AVX2 CPU unless `TF_ENABLE_ONEDNN_OPTS=1` is set before TensorFlow is
imported; see docs/PERFORMANCE.md, "Against PyTorch"); the first line printed says which.

Each timing is the best of a few interleaved runs after a warm-up run; a case slower
than `--budget` seconds stops repeating (one slower than that at warm-up is timed by its
warm-up run). Runs in about one to two minutes on two
idle cores; timings on a shared machine are noisy, compare within a line.

    [TF_ENABLE_ONEDNN_OPTS=1] python tools/bench_fc6.py [--budget=4] [--skip_full_width_conv2d]
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from coseg_tf.layers import DilatedConv2D  # noqa: E402
from coseg_tf.model import build_deeplab_largefov  # noqa: E402

_BUDGET = flags.DEFINE_float(
    "budget", 4.0, "Seconds after which a case stops repeating (best of the runs).")
_SKIP_FULL_WIDTH_CONV2D = flags.DEFINE_bool(
    "skip_full_width_conv2d", False,
    "Skip the dilated Conv2D at width 1.0 (tens of seconds on a 21x21 map).")


def _onednn_enabled():
    """Whether TensorFlow's oneDNN graph rewrite is on (None if it cannot be read)."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # noqa: E501  (private switch)
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def _time_runs(steps, budget, max_runs=5):
    """Best seconds of each callable in `steps`, runs interleaved after a warm-up.

    A step whose warm-up (tracing included) already took longer than `budget` is not
    run again: its warm-up time stands (an over-estimate by the tracing time, well
    under a second).
    """
    best, spent = [], []
    for step in steps:
        start = time.perf_counter()
        step()  # trace and warm up
        warm_up = time.perf_counter() - start
        slow = warm_up > budget
        best.append(warm_up if slow else float("inf"))
        spent.append(warm_up if slow else 0.0)
    for _ in range(max_runs):
        for k, step in enumerate(steps):
            if spent[k] > budget:
                continue
            start = time.perf_counter()
            step()
            elapsed = time.perf_counter() - start
            best[k] = min(best[k], elapsed)
            spent[k] += elapsed
    return best


def _layer_step(layer, batch, size, channels):
    """A compiled forward+backward of `layer` on a random [batch, size, size, channels]."""
    x = tf.Variable(tf.random.normal([batch, size, size, channels]))
    layer.build(x.shape)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_mean(tf.square(y))
        grads = tape.gradient(loss, [x] + layer.trainable_variables)
        return loss, grads

    return lambda: tf.nest.map_structure(lambda t: t.numpy(), step())


def _conv_pair(filters, dilation):
    """The two implementations of one layer, sharing a kernel."""
    fast = DilatedConv2D(filters, 3, dilation_rate=dilation, activation="relu")
    slow = keras.layers.Conv2D(filters, 3, dilation_rate=dilation, padding="same",
                               activation="relu")
    return slow, fast


def _layer_table(title, dilation, skip_slow_full_width):
    print(f"\n{title} (3x3, dilation {dilation}), forward+backward seconds")
    print(f"{'map':>6} {'batch':>5} {'cin->cout':>10} {'Conv2D':>9} {'DilatedConv2D':>14} "
          f"{'speed-up':>9}")
    for multiplier in (0.25, 1.0):
        cin = int(512 * multiplier)
        cout = int((1024 if dilation == 12 else 512) * multiplier)
        for size, batch in ((21, 8), (41, 4)):
            slow, fast = _conv_pair(cout, dilation)
            if skip_slow_full_width and multiplier == 1.0 and dilation == 12:
                (t_fast,) = _time_runs([_layer_step(fast, batch, size, cin)], _BUDGET.value)
                t_slow = float("nan")
            else:
                t_slow, t_fast = _time_runs([_layer_step(slow, batch, size, cin),
                                             _layer_step(fast, batch, size, cin)],
                                            _BUDGET.value)
            print(f"{size:>4}^2 {batch:>5} {f'{cin}->{cout}':>10} {t_slow:>9.3f} "
                  f"{t_fast:>14.3f} {t_slow / t_fast:>8.1f}x", flush=True)


def _with_conv2d(model):
    """A copy of `model` whose DilatedConv2D layers are dilated keras Conv2D."""
    def clone(layer):
        if isinstance(layer, DilatedConv2D):
            config = layer.get_config()
            return keras.layers.Conv2D(
                config["filters"], config["kernel_size"],
                dilation_rate=config["dilation_rate"], padding="same",
                activation=config["activation"], name=config["name"])
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _model_step(model, batch, size, num_classes):
    image = tf.random.uniform([batch, size, size, 3], 0, 255)
    region = tf.cast(tf.random.uniform([batch, size, size, 1]) > 0.3, tf.float32)
    h = -(-size // 8)
    labels = tf.random.uniform([batch, h, h], 0, num_classes, dtype=tf.int32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            outputs = model({"image": image, "human_region": region}, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=outputs["logits"]))
        return loss, tape.gradient(loss, model.trainable_variables)

    return lambda: tf.nest.map_structure(lambda t: t.numpy(), step())


def _model_table():
    num_classes = 6
    print("\nWhole model, width 0.25, train-step forward+backward seconds "
          "(per input pixel in microseconds)")
    fast = build_deeplab_largefov(num_classes=num_classes, width_multiplier=0.25)
    slow = _with_conv2d(fast)
    cases = ((161, 8), (321, 4))
    per_pixel = {}
    print(f"{'crop':>6} {'batch':>5} {'Conv2D':>18} {'DilatedConv2D':>18} {'speed-up':>9}")
    for size, batch in cases:
        t_slow, t_fast = _time_runs([_model_step(slow, batch, size, num_classes),
                                     _model_step(fast, batch, size, num_classes)],
                                    _BUDGET.value)
        pixels = batch * size * size
        per_pixel[size] = (t_slow / pixels * 1e6, t_fast / pixels * 1e6)
        print(f"{size:>4}^2 {batch:>5} {t_slow:>8.3f} ({per_pixel[size][0]:5.2f}us) "
              f"{t_fast:>8.3f} ({per_pixel[size][1]:5.2f}us) {t_slow / t_fast:>8.1f}x",
              flush=True)
    print(f"per-pixel time 161^2 / 321^2: Conv2D {per_pixel[161][0] / per_pixel[321][0]:.2f}, "
          f"DilatedConv2D {per_pixel[161][1] / per_pixel[321][1]:.2f}")


def main(argv):
    del argv
    start = time.perf_counter()
    onednn = {True: "on", False: "off", None: "unknown"}[_onednn_enabled()]
    print(f"TensorFlow's oneDNN rewrite: {onednn}")
    _layer_table("fc6", 12, _SKIP_FULL_WIDTH_CONV2D.value)
    _layer_table("conv5 (one layer)", 2, False)
    _model_table()
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
