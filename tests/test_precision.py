"""Mixed precision, loss scaling, XLA and the CPU flags (coseg_tf/precision.py).

A coseg train step built by `train_lib.build_trainer` under mixed_float16 and under
mixed_bfloat16 is compared with the float32 step on the same initial weights and batch:
its losses and its weight update. Tolerances (measured here at width 0.0625, 33^2,
1 + 3 images, weight decay 0.1 so that the decay term is a visible part of the update):

  losses, relative         float16 1e-4 (measured ~1e-6)   bfloat16 1e-3 (~2e-5)
  update, max |dW - dW32| / max |dW32|
                           float16 5e-3 (measured 2.4e-4)  bfloat16 3e-2 (2.1e-3)
  (without the loss scale on the weight decay, float16 gives 1.8e-2)

A loss scale that overflows float16 gradients skips the step (weights unchanged and
finite, scale halved), where the same step with a fixed scale writes Inf/NaN into the
weights. XLA gives the same losses and update as no XLA.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import keras

from coseg_tf import precision
from coseg_tf import train_lib
from pipelines import schema

SCHEME = schema.get_scheme("all4")
SIZE = 33
TOLERANCES = {"float16": (1e-4, 5e-3), "bfloat16": (1e-3, 3e-2)}


def _batch(seed=0, n_f=1, n_u=3):
    rng = np.random.default_rng(seed)
    region = np.zeros((SIZE, SIZE, 1), np.float32)
    region[4:28, 8:24] = 1
    labels = rng.integers(0, SCHEME.num_classes, (n_f, SIZE, SIZE)).astype(np.int32)
    labels[:, region[..., 0] == 0] = 0
    return {"labeled": {"image": rng.uniform(0, 255, (n_f, SIZE, SIZE, 3)).astype(np.float32),
                        "human_region": np.stack([region] * n_f), "labels": labels},
            "unlabeled": {"image": rng.uniform(0, 255, (n_u, SIZE, SIZE, 3)).astype(np.float32),
                          "human_region": np.stack([region] * n_u)}}


def _trainer(mixed_precision="off", **overrides):
    """A compiled coseg trainer as train.py builds it (tiny width, no dropout)."""
    fields = dict(train_data="unused", model_dir="unused", width_multiplier=0.0625,
                  init="random", dropout_rate=0.0, learning_rate=0.01, weight_decay=0.1,
                  mixed_precision=mixed_precision)
    fields.update(overrides)
    return train_lib.build_trainer(train_lib.TrainConfig(**fields), SCHEME)


def _weights(trainer):
    return [v.numpy() for v in trainer.network.trainable_variables]


def _one_step(trainer, batch):
    before = _weights(trainer)
    logs = {k: float(v) for k, v in tf.function(trainer.train_step)(batch).items()}
    return logs, before, _weights(trainer)


@pytest.fixture(scope="module")
def float32_step():
    return _one_step(_trainer("off"), _batch())


@pytest.mark.parametrize("mixed_precision", ["float16", "bfloat16"])
def test_mixed_precision_step_equals_the_float32_step(float32_step, mixed_precision):
    loss_tol, update_tol = TOLERANCES[mixed_precision]
    trainer = _trainer(mixed_precision)
    assert trainer.network.get_layer("fc6").compute_dtype == mixed_precision
    assert trainer.network.get_layer("fc8").compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in trainer.network.trainable_variables)
    logs, before, after = _one_step(trainer, _batch())
    logs32, before32, after32 = float32_step
    for a, b in zip(before, before32):
        np.testing.assert_array_equal(a, b)  # same seed, same float32 initial weights
    assert set(logs) == set(logs32)
    for name in logs32:
        assert logs[name] == pytest.approx(logs32[name], rel=loss_tol), name
    if mixed_precision == "float16":
        # The step was applied, not skipped by the loss scaling.
        assert int(trainer.optimizer.applied_steps.numpy()) == 1
    update = [b - a for a, b in zip(before, after)]
    update32 = [b - a for a, b in zip(before32, after32)]
    largest = max(np.abs(u).max() for u in update32)
    worst = max(np.abs(u - u32).max() for u, u32 in zip(update, update32))
    assert worst <= update_tol * largest, (worst, largest)


def test_float16_runs_with_dynamic_loss_scaling_and_bfloat16_without():
    assert isinstance(_trainer("float16").optimizer, precision.SyncedLossScaleOptimizer)
    for choice in ("off", "bfloat16"):
        optimizer = _trainer(choice).optimizer
        assert isinstance(optimizer, keras.optimizers.SGD)
        assert optimizer.scale_loss(1.0) == 1.0


def test_an_overflowing_float16_step_is_skipped_without_nan():
    batch = _batch(seed=1)
    # A fixed huge scale, no skipping: the float16 backward pass overflows and the
    # update writes Inf/NaN into the weights. (What the dynamic scaling must prevent.)
    naive = _trainer("float16")
    inner = naive.optimizer.inner_optimizer
    inner.loss_scale_factor = 2.0 ** 40
    naive.compile(optimizer=inner)
    naive.optimizer.build(naive.network.trainable_variables)
    _one_step(naive, batch)
    assert not all(np.isfinite(w).all() for w in _weights(naive))

    trainer = _trainer("float16")
    optimizer = trainer.optimizer
    optimizer.dynamic_scale.assign(2.0 ** 40)
    logs, before, after = _one_step(trainer, batch)
    assert np.isfinite(logs["loss"])  # the loss itself is float32 and finite
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)  # skipped: nothing changed
    assert float(optimizer.dynamic_scale.numpy()) == 2.0 ** 39
    assert int(optimizer.iterations.numpy()) == 1  # train steps, skipped included
    assert int(optimizer.applied_steps.numpy()) == 0
    # The scale halves at each overflow until a step goes through, finite.
    step = tf.function(trainer.train_step)
    for _ in range(40):
        step(batch)
        if int(optimizer.applied_steps.numpy()):
            break
    assert int(optimizer.applied_steps.numpy()) == 1
    weights = _weights(trainer)
    assert all(np.isfinite(w).all() for w in weights)
    assert any(not np.array_equal(a, b) for a, b in zip(before, weights))
    assert float(optimizer.dynamic_scale.numpy()) < 2.0 ** 39


@pytest.mark.slow  # XLA compiles the step: ~20 s
def test_jit_compile_gives_the_same_losses_and_update():
    batch = _batch(seed=2)
    ds = tf.data.Dataset.from_tensors(batch)
    runs = {}
    for jit in (False, True):
        trainer = _trainer(jit_compile=jit)
        assert trainer.jit_compile is jit
        before = _weights(trainer)
        history = trainer.fit(ds, epochs=1, steps_per_epoch=1, verbose=0).history
        runs[jit] = ({k: v[0] for k, v in history.items()}, before, _weights(trainer))
    (logs, before, after), (logs_xla, before_xla, after_xla) = runs[False], runs[True]
    assert set(logs) == set(logs_xla) >= {"loss", "humanparts", "human", "coseg"}
    for name in logs:
        assert logs_xla[name] == pytest.approx(logs[name], rel=1e-5, abs=1e-7), name
    for a, b, c, d in zip(before, after, before_xla, after_xla):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_allclose(d - c, b - a, atol=1e-6)


def test_policy_names():
    assert [precision.policy_name(c) for c in precision.MIXED_PRECISION] == [
        "float32", "mixed_float16", "mixed_bfloat16"]
    with pytest.raises(ValueError, match="mixed_precision must be one of off, float16"):
        precision.policy_name("half")


CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
flags\t\t: fpu sse2 avx avx2 fma {extra}
bogomips\t: 4000.00

processor\t: 1
flags\t\t: fpu sse2 avx avx2 fma {extra}
"""


@pytest.mark.parametrize("extra, native", [
    ("", False),                                  # this project's AVX2 EPYC
    ("avx512f avx512_vnni", False),               # AVX-512 without BF16 (Skylake-SP)
    ("avx512f avx512_vnni avx512_bf16", True),    # Cooper Lake, Zen 4
    ("avx512f amx_tile amx_bf16 amx_int8", True),  # Sapphire Rapids AMX
])
def test_native_bfloat16_is_read_from_the_cpu_flags(extra, native):
    text = CPUINFO.format(vendor="X", extra=extra)
    assert precision.read_cpuinfo(text)["vendor_id"] == "X"
    flags = precision.cpu_flags(text)
    assert {"avx2", "fma"} <= flags
    assert set(extra.split()) <= flags
    assert precision.has_native_bfloat16(flags) is native


@pytest.mark.parametrize("extra, gpu, expected", [
    ("", False, "off"),                                   # AVX2: bfloat16 is emulated
    ("avx512f avx512_vnni", False, "off"),
    ("avx512f avx512_vnni avx512_bf16", False, "bfloat16"),
    ("avx512f amx_tile amx_bf16", False, "bfloat16"),
    ("avx512f amx_tile amx_bf16", True, "off"),           # a GPU: the user's choice
])
def test_auto_precision_is_bfloat16_only_on_a_native_bfloat16_cpu(extra, gpu, expected):
    text = CPUINFO.format(vendor="X", extra=extra)
    assert precision.resolve("auto", cpuinfo_text=text, gpu_visible=gpu) == expected
    for choice in precision.MIXED_PRECISION:  # an explicit choice is kept
        assert precision.resolve(choice, cpuinfo_text=text, gpu_visible=gpu) == choice
    with pytest.raises(ValueError, match="must be one of off, float16, bfloat16, auto"):
        precision.resolve("bf16", cpuinfo_text=text, gpu_visible=gpu)


def test_cpu_flags_of_this_machine_and_of_no_cpuinfo():
    assert precision.cpu_flags("processor\t: 0\n") == frozenset()
    flags = precision.cpu_flags()
    with open("/proc/cpuinfo") as f:
        first = next(line for line in f if line.startswith("flags"))
    assert flags == frozenset(first.split(":", 1)[1].split())


# === A mixed-precision run, then eval and export from it ===

@pytest.fixture(scope="module")
def tfrecords(tmp_path_factory):
    from conftest import make_synthetic_tfrecords

    return make_synthetic_tfrecords(tmp_path_factory.mktemp("synthetic"), num_images=12,
                                    image_size=80, seed=0, val_fraction=0.25)


@pytest.mark.slow
@pytest.mark.parametrize("mixed_precision, fc6_impl", [("float16", "auto"),
                                                       ("bfloat16", "conv"),
                                                       ("auto", "taps")])
def test_eval_and_export_of_a_mixed_precision_run(tfrecords, tmp_path, monkeypatch,
                                                  mixed_precision, fc6_impl):
    import json

    from coseg_tf import evaluation
    from coseg_tf import export as export_lib

    model_dir = str(tmp_path / "run")
    config = train_lib.TrainConfig(
        train_data=tfrecords["train"], model_dir=model_dir, init="random",
        width_multiplier=0.0625, crop_size=65, batch_labeled=1, batch_unlabeled=2,
        num_labeled=3, steps=2, checkpoint_every=2, strategy="default", verbose=0,
        learning_rate=0.01, mixed_precision=mixed_precision, fc6_impl=fc6_impl)
    train_lib.run_training(config)
    with open(f"{model_dir}/model.json") as f:
        info = json.load(f)
    # model.json: the precision the steps ran in ("auto" as this machine resolves it).
    assert info["mixed_precision"] == precision.resolve(mixed_precision)
    assert info["mixed_precision"] in precision.MIXED_PRECISION
    assert info["fc6_impl"] == fc6_impl
    with open(f"{model_dir}/DONE") as f:
        assert f.read() == "steps 2\n"  # skipped float16 steps count as steps

    # Eval and export rebuild the network in float32, with the run's fc6 form.
    network, _ = train_lib.load_network(model_dir)
    assert network.get_layer("fc6").implementation == train_lib.model_lib.resolve_fc6_impl(
        fc6_impl)
    assert {layer.compute_dtype for layer in network.layers} == {"float32"}
    weights = network.get_weights()
    assert all(np.isfinite(w).all() for w in weights)

    metrics = evaluation.evaluate(evaluation.EvalConfig(
        eval_data=tfrecords["val"], model_dir=model_dir, verbose=0))
    assert metrics["num_images"] > 0 and 0.0 <= metrics["pixel_accuracy"] <= 1.0

    result = export_lib.run_export(export_lib.ExportConfig(
        model_dir=model_dir, export_dir=str(tmp_path / "export")))
    served = tf.saved_model.load(result.path).signatures[export_lib.MASK_SIGNATURE]
    assert served.structured_outputs["probabilities"].dtype == tf.float32
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 41, 47, 3)).astype(np.uint8)
    mask = np.ones((1, 41, 47), np.uint8)
    got = served(image=tf.constant(image), human_mask=tf.constant(mask))
    # The same weights in a float32 network in memory, through the same function.
    names = tmp_path / "class_names.txt"
    names.write_text("".join(n + "\n" for n in SCHEME.class_names))
    server = export_lib.SegmentationServer(network, str(names))
    expected = server.serve_mask(image, mask)
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-6)

    # Resuming in another precision is refused before any work (the backup holds the
    # optimizer state of this one); a new run starts from the weights in float32.
    other = dataclasses.replace(config, mixed_precision="off", steps=4)
    with pytest.raises(train_lib.ConfigError,
                       match=f"--mixed_precision: '{mixed_precision}' -> 'off'"):
        train_lib.run_training(other)
    if mixed_precision == "float16":
        warm = dataclasses.replace(other, model_dir=str(tmp_path / "warm"), init="run",
                                   init_weights=model_dir, steps=1, checkpoint_every=1)
        trainer_weights = {}
        original = train_lib.build_trainer

        def build_and_keep(*args, **kwargs):
            trainer = original(*args, **kwargs)
            trainer_weights["start"] = trainer.network.get_weights()
            return trainer

        monkeypatch.setattr(train_lib, "build_trainer", build_and_keep)
        train_lib.run_training(warm)
        for a, b in zip(trainer_weights["start"], weights):
            np.testing.assert_array_equal(a, b)
