"""Tests of coseg_tf.model: shapes at stride 8, the masking, names, alignment, saving."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from coseg_tf.layers import DilatedConv2D
from coseg_tf.masking import HumanMasking
from coseg_tf.model import (VGG16_CONV_NAMES, build_deeplab_largefov,
                            resolve_fc6_impl)

NUM_CLASSES = 6
RGB_MEANS = np.array([123.68, 116.779, 103.939], np.float32)


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(0)
    return build_deeplab_largefov(num_classes=NUM_CLASSES, width_multiplier=0.125)


def _inputs(batch, height, width, seed=0, region=None):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 255, size=[batch, height, width, 3]).astype(np.float32)
    if region is None:
        region = np.zeros([batch, height, width, 1], np.float32)
        region[:, height // 4: 3 * height // 4 + 1, width // 3:, :] = 1
    return {"image": image, "human_region": region}


@pytest.mark.parametrize("height, width, expected", [
    (321, 321, (41, 41)),
    (161, 161, (21, 21)),
    (97, 75, (13, 10)),   # non-square, odd
    (64, 50, (8, 7)),     # even sizes: still ceil(H / 8)
])
def test_output_shapes_at_stride_8(small_model, height, width, expected):
    outputs = small_model(_inputs(1, height, width), training=False)
    assert set(outputs) == {"logits", "masked_features"}
    assert outputs["logits"].shape == (1, *expected, NUM_CLASSES)
    assert outputs["masked_features"].shape == (1, *expected, 128)  # 1024 * 0.125
    assert outputs["logits"].dtype == tf.float32
    assert outputs["masked_features"].dtype == tf.float32


def test_full_width_parameter_count_and_vgg16_layers():
    model = build_deeplab_largefov(num_classes=21)
    assert 20_000_000 <= model.count_params() <= 21_000_000, model.count_params()
    # Conv1-conv5 carry keras.applications.VGG16's names and kernel shapes.
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    vgg_convs = {layer.name: layer.kernel.shape for layer in vgg.layers
                 if isinstance(layer, keras.layers.Conv2D)}
    assert tuple(vgg_convs) == VGG16_CONV_NAMES
    for name, shape in vgg_convs.items():
        assert model.get_layer(name).kernel.shape == shape, name
    assert model.get_layer("fc6").kernel.shape == (3, 3, 512, 1024)
    assert model.get_layer("fc7").kernel.shape == (1, 1, 1024, 1024)
    assert model.get_layer("fc8").kernel.shape == (1, 1, 1024, 21)


def test_quarter_width_parameter_count():
    model = build_deeplab_largefov(num_classes=21, width_multiplier=0.25)
    assert 1_200_000 <= model.count_params() <= 1_400_000, model.count_params()


def test_named_layers(small_model):
    fc6 = small_model.get_layer("fc6")
    assert isinstance(fc6, DilatedConv2D) and fc6.dilation_rate == (12, 12)
    assert small_model.get_layer("block5_conv1").dilation_rate == (2, 2)
    assert small_model.get_layer("block4_conv1").dilation_rate == (1, 1)
    assert isinstance(small_model.get_layer("masking"), HumanMasking)
    fc8 = small_model.get_layer("fc8")
    assert [v.path.split("/")[-1] for v in fc8.trainable_variables] == ["kernel", "bias"]
    assert fc8.kernel.shape == (1, 1, 128, NUM_CLASSES)
    assert small_model.get_layer("fc7").kernel.shape == (1, 1, 128, 128)


def test_masked_features_are_zero_outside_the_region(small_model):
    inputs = _inputs(2, 97, 75, seed=1)
    outputs = small_model(inputs, training=False)
    masked = np.asarray(outputs["masked_features"])
    cell_region = inputs["human_region"][:, ::8, ::8, :]  # cell (r, c) <- pixel (8r, 8c)
    outside = np.broadcast_to(cell_region == 0, masked.shape)
    assert outside.any() and (~outside).any()
    assert np.all(masked[outside] == 0)
    assert np.count_nonzero(masked[~outside]) > 0
    # fc8 reads the masked features: outside the region the logits are fc8's bias.
    fc8_bias = small_model.get_layer("fc8").bias.numpy()
    logits = np.asarray(outputs["logits"])
    np.testing.assert_allclose(logits[cell_region[..., 0] == 0],
                               np.broadcast_to(fc8_bias, logits[cell_region[..., 0] == 0].shape))


def test_empty_region_gives_zero_features(small_model):
    inputs = _inputs(1, 41, 41, region=np.zeros([1, 41, 41, 1], np.float32))
    outputs = small_model(inputs, training=False)
    assert np.all(np.asarray(outputs["masked_features"]) == 0)


def test_dropout_only_in_training(small_model):
    inputs = _inputs(1, 65, 65, seed=2, region=np.ones([1, 65, 65, 1], np.float32))
    a = small_model(inputs, training=False)["logits"]
    b = small_model(inputs, training=False)["logits"]
    c = small_model(inputs, training=True)["logits"]
    np.testing.assert_allclose(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("size", [33, 32])
def test_feature_cell_sits_on_input_pixel_8k(size):
    """Through identity convolutions, an impulse at pixel p reaches the pool3 cells k
    with |8k - p| <= 7 (windows centred on 8k), for odd and even sizes alike."""
    model = build_deeplab_largefov(num_classes=2, width_multiplier=0.0625)
    for name in VGG16_CONV_NAMES[:7]:  # blocks 1-3
        layer = model.get_layer(name)
        kernel = np.zeros(layer.kernel.shape, np.float32)
        kernel[1, 1] = np.eye(*kernel.shape[2:])
        layer.set_weights([kernel, np.zeros(layer.bias.shape, np.float32)])
    pool3 = keras.Model(model.input["image"], model.get_layer("block3_pool").output)
    cells = -(-size // 8)
    for p in (0, 5, 8, 12, 16, size - 1):
        image = np.broadcast_to(RGB_MEANS, [1, size, size, 3]).copy()
        image[0, p, p, 2] += 100.0  # blue is channel 0 after RGB -> BGR
        lit = np.asarray(pool3(image))[0, :, :, 0] > 0
        expected_1d = np.array([abs(8 * k - p) <= 7 for k in range(cells)])
        np.testing.assert_array_equal(lit, np.outer(expected_1d, expected_1d),
                                      err_msg=f"impulse at pixel {p} of {size}")


def test_save_and_load_keras_file(small_model, tmp_path):
    path = tmp_path / "model.keras"
    small_model.save(path)
    restored = keras.saving.load_model(path)
    inputs = _inputs(2, 57, 43, seed=3)
    expected = small_model(inputs, training=False)
    got = restored(inputs, training=False)
    for key in ("logits", "masked_features"):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-5)
    assert isinstance(restored.get_layer("fc6"), DilatedConv2D)
    assert isinstance(restored.get_layer("masking"), HumanMasking)


def test_mixed_precision_outputs_stay_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_deeplab_largefov(num_classes=3, width_multiplier=0.0625)
        outputs = model(_inputs(1, 33, 33), training=False)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("fc6").compute_dtype == "float16"
    assert outputs["logits"].dtype == tf.float32
    assert outputs["masked_features"].dtype == tf.float32


def test_dtype_policy_reaches_every_layer_between_preprocessing_and_masking():
    model = build_deeplab_largefov(num_classes=3, width_multiplier=0.0625,
                                   dtype_policy="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the global one is untouched
    float32_layers = {"image", "human_region", "preprocess", "masking", "fc8"}
    for layer in model.layers:
        expected = "float32" if layer.name in float32_layers else "bfloat16"
        assert layer.compute_dtype == expected, layer.name
        assert all(v.dtype == "float32" for v in layer.weights), layer.name
    outputs = model(_inputs(1, 33, 33), training=False)
    assert outputs["logits"].dtype == tf.float32
    assert outputs["masked_features"].dtype == tf.float32


def test_fc6_impl_auto_is_taps_on_cpu_and_conv_with_a_gpu():
    assert resolve_fc6_impl("auto", gpus=0) == "taps"
    assert resolve_fc6_impl("auto", gpus=2) == "conv"
    assert resolve_fc6_impl("conv", gpus=0) == "conv"
    assert resolve_fc6_impl("taps", gpus=1) == "taps"
    assert resolve_fc6_impl("auto") == "taps"  # no GPU here
    with pytest.raises(ValueError, match="fc6_impl must be one of auto, taps, conv"):
        resolve_fc6_impl("cudnn")


def test_fc6_taps_and_conv_agree_in_values_and_gradients(tmp_path):
    """The two forms of fc6 hold the same weights and compute the same network."""
    networks = {}
    for impl in ("taps", "conv"):
        keras.utils.set_random_seed(3)
        networks[impl] = build_deeplab_largefov(num_classes=NUM_CLASSES,
                                                width_multiplier=0.125,
                                                fc6_impl=impl, dropout_rate=0.0)
        assert networks[impl].get_layer("fc6").implementation == impl
    taps, conv = networks["taps"], networks["conv"]
    # A weights file of either form loads into the other (same layer keys).
    taps.save_weights(str(tmp_path / "taps.weights.h5"))
    conv.load_weights(str(tmp_path / "taps.weights.h5"))
    for a, b in zip(taps.weights, conv.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    inputs = _inputs(2, 65, 57, seed=1)
    weighting = tf.random.stateless_normal([2, 9, 8, NUM_CLASSES], seed=(1, 2))

    def values_and_gradients(network):
        with tf.GradientTape() as tape:
            # training=True (dropout is 0).
            logits = network(inputs, training=True)["logits"]
            loss = tf.reduce_sum(logits * weighting)
        return logits, tape.gradient(loss, network.trainable_variables)

    logits_taps, grads_taps = values_and_gradients(taps)
    logits_conv, grads_conv = values_and_gradients(conv)
    scale = float(tf.reduce_max(tf.abs(logits_taps)))
    np.testing.assert_allclose(logits_conv, logits_taps, atol=1e-5 * max(1.0, scale))
    for v, g_taps, g_conv in zip(taps.trainable_variables, grads_taps, grads_conv):
        g_scale = max(1.0, float(tf.reduce_max(tf.abs(g_taps))))
        np.testing.assert_allclose(g_conv, g_taps, atol=1e-5 * g_scale, err_msg=v.path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=0), "num_classes"),
    (dict(num_classes=2.5), "num_classes"),
    (dict(num_classes=3, width_multiplier=0), "width_multiplier"),
    (dict(num_classes=3, dropout_rate=1.0), "dropout_rate"),
    (dict(num_classes=3, fc6_impl="cudnn"), "fc6_impl"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_deeplab_largefov(**kwargs)
