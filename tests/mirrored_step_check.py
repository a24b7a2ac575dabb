"""One train step under MirroredStrategy (2 logical CPUs) vs the same step on one device.

Run as a subprocess by tests/test_trainer.py: the CPU must be split into logical
devices before TensorFlow initialises, which a pytest process shared with other tests
cannot promise. Prints one JSON line with the largest differences.

Every method of the registry (`coseg_tf.objectives.REGISTRY`) is checked, each with
the streams its objective needs. Per-replica mining and CutMix mean the unlabeled
terms of a 2-replica step are the means of the terms of the two replica shards (each
labeled image mines among its own replica's unlabeled images, each strong image takes
its CutMix partner among them); the single-device reference computes exactly that, by
shards, and applies the gradient of their mean. The supervised step needs no such
care: its loss is a mean over images, and each replica holds one labeled image.
Randomness is off so that the two sides draw nothing: no dropout in the network, no
feature dropout (unimatch's perturbation stream runs through the encoder/head split
all the same), and a confidence threshold of 0 so that every pseudo-label counts and
the consistency terms are not zero.

Mixed float16 (`coseg_float16`): the coseg step under dynamic loss scaling
(`precision.SyncedLossScaleOptimizer`) on 2 replicas against the same on one device.
`loss_scale_agreement`: a step where only the second replica's gradients are Inf must
be skipped on both (Keras' own LossScaleOptimizer applies it: `keras_weights_finite`).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from coseg_tf import distribute  # noqa: E402

distribute.split_cpu(2)

import keras  # noqa: E402

from coseg_tf import model as model_lib  # noqa: E402
from coseg_tf import objectives  # noqa: E402
from coseg_tf import precision  # noqa: E402
from coseg_tf import trainer as trainer_lib  # noqa: E402
from pipelines import streams  # noqa: E402

NUM_CLASSES = 4
CROP = 33
B_F, B_U = 1, 2  # per replica


def make_batch(rng, replicas):
    def images(n):
        return rng.uniform(0, 255, (n, CROP, CROP, 3)).astype(np.float32)

    def regions(n):
        r = np.zeros((n, CROP, CROP, 1), np.float32)
        for i in range(n):
            y0, x0 = rng.integers(0, 10, 2)
            r[i, y0:y0 + 20, x0:x0 + 18] = 1
        return r

    def boxes(n):
        b = np.zeros((n, CROP, CROP), np.float32)
        for i in range(n):
            y0, x0 = rng.integers(0, 20, 2)
            b[i, y0:y0 + 12, x0:x0 + 10] = 1
        return b

    nf, nu = B_F * replicas, B_U * replicas
    labels = rng.integers(0, NUM_CLASSES, (nf, CROP, CROP)).astype(np.int32)
    reg_f = regions(nf)
    labels[reg_f[..., 0] == 0] = 0
    unlabeled = {"image": images(nu), "human_region": regions(nu)}
    for image_key, box_key in streams.STRONG_VIEW_KEYS:
        unlabeled[image_key] = images(nu)
        unlabeled[box_key] = boxes(nu)
    return {
        "labeled": {"image": images(nf), "human_region": reg_f, "labels": labels},
        "unlabeled": unlabeled,
        "image_labels": np.concatenate(
            [np.ones((nu, 1)), rng.integers(0, 2, (nu, NUM_CLASSES - 1))], 1).astype(np.float32),
    }


def build(method, seed=1, mixed_precision="off"):
    keras.utils.set_random_seed(seed)
    net = model_lib.build_deeplab_largefov(
        num_classes=NUM_CLASSES, width_multiplier=0.0625, dropout_rate=0.0,
        dtype_policy=precision.policy_name(mixed_precision))
    objective = objectives.build(method, alpha=0.5, beta=0.5, confidence_threshold=0.0,
                                 feature_dropout=0.0)
    trainer = trainer_lib.CosegTrainer(net, num_classes=NUM_CLASSES, objective=objective)
    trainer.compile(optimizer=precision.wrap_optimizer(
        keras.optimizers.SGD(0.01, momentum=0.9), mixed_precision))
    trainer.build()
    trainer.optimizer.build(trainer.network.trainable_variables)
    return trainer


def shard(batch, r, replicas):
    out = {}
    for stream, per in (("labeled", B_F), ("unlabeled", B_U)):
        out[stream] = {k: v[r * per:(r + 1) * per] for k, v in batch[stream].items()}
    return out


def data_for(batch, method):
    """The element a method's pipeline gives: what its objective needs, no more."""
    needs = objectives.get(method).needs
    if not needs.unlabeled:
        return {"labeled": batch["labeled"]}
    keys = ["image", "human_region"]
    keys += [k for pair in streams.STRONG_VIEW_KEYS[:needs.strong_views] for k in pair]
    out = {"labeled": batch["labeled"],
           "unlabeled": {k: batch["unlabeled"][k] for k in keys}}
    if needs.image_labels:
        out["unlabeled"]["image_labels"] = batch["image_labels"]
    return out


def reference_step(trainer, batch, replicas):
    """Single device: mean over replica shards of the per-shard losses, one update."""
    with tf.GradientTape() as tape:
        results = [trainer.compute_losses(shard(batch, r, replicas), training=True)[0]
                   for r in range(replicas)]
        loss = tf.add_n([res["loss"] for res in results]) / replicas
        loss = trainer.optimizer.scale_loss(loss)  # float16's loss scale, else 1
    variables = trainer.network.trainable_variables
    grads = tape.gradient(loss, variables)
    trainer.optimizer.apply(trainer.adjust_gradients(
        grads, variables, loss_scale=trainer.optimizer.scale_loss(1.0)), variables)
    return {k: float(np.mean([res[k] for res in results])) for k in results[0]}


class TinyLinear(keras.Model):
    """y = x W, W = ones: the smallest model whose gradient is the input itself."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")

    def call(self, x):
        return self.dense(x)

    def train_step(self, x):
        with tf.GradientTape() as tape:
            loss = self.optimizer.scale_loss(tf.reduce_mean(self(x)))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return {"loss": loss}


def loss_scale_agreement(strategy):
    """One step whose gradient is Inf on the second replica only, with each optimizer."""
    x = np.array([[1.0, 1.0], [np.inf, 1.0]], np.float32)  # one row per replica
    out = {}
    for name, wrap in (("synced", precision.SyncedLossScaleOptimizer),
                       ("keras", keras.optimizers.LossScaleOptimizer)):
        with strategy.scope():
            model = TinyLinear()
            model.build((None, 2))
            optimizer = wrap(keras.optimizers.SGD(0.1), initial_scale=4.0)
            model.compile(optimizer=optimizer)
        model.fit(tf.data.Dataset.from_tensors(x), epochs=1, steps_per_epoch=1, verbose=0)
        weights = model.dense.kernel.numpy()
        out[f"{name}_weights_finite"] = bool(np.isfinite(weights).all())
        out[f"{name}_weights_unchanged"] = bool(np.array_equal(weights, np.ones_like(weights)))
        out[f"{name}_scale"] = float(optimizer.dynamic_scale.numpy())
    return out


CASES = [(method, "off") for method in objectives.METHODS] + [("coseg", "float16")]


def main():
    replicas = 2
    rng = np.random.default_rng(0)
    batch = make_batch(rng, replicas)
    report = {"devices": len(tf.config.list_logical_devices("CPU"))}
    # One strategy for every case: each new MirroredStrategy numbers its collective
    # ops from the same keys again, and the runtime keeps the parameters of the first
    # collective with a key; a case whose collectives differ from the previous one's
    # (the float16 step all-reduces a flag first) would then fail with a shape mismatch.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for method, mixed_precision in CASES:
        with strategy.scope():
            mirrored = build(method, mixed_precision=mixed_precision)
        data = data_for(batch, method)
        ds = tf.data.Dataset.from_tensors(data)
        logs = mirrored.fit(ds, epochs=1, steps_per_epoch=1, verbose=0).history

        single = build(method, mixed_precision=mixed_precision)
        if method == "supervised":
            ref = single.fit(tf.data.Dataset.from_tensors(data), epochs=1, verbose=0).history
            ref = {k: v[0] for k, v in ref.items()}
        else:
            ref = reference_step(single, data, replicas)
        w_m = [v.numpy() for v in mirrored.network.trainable_variables]
        w_s = [v.numpy() for v in single.network.trainable_variables]
        w_0 = [v.numpy() for v in build(method).network.trainable_variables]
        key = method if mixed_precision == "off" else f"{method}_{mixed_precision}"
        report[key] = {
            "losses_mirrored": {k: float(v[0]) for k, v in logs.items()},
            "losses_single": ref,
            "max_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(w_m, w_s)),
            "max_weight_change": max(float(np.max(np.abs(a - b))) for a, b in zip(w_m, w_0)),
            "applied_steps": int(getattr(mirrored.optimizer, "applied_steps",
                                         mirrored.optimizer.iterations).numpy()),
        }
    report["loss_scale_agreement"] = loss_scale_agreement(strategy)
    print(json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())
