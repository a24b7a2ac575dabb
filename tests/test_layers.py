"""Tests of coseg_tf.layers: DilatedConv2D (both forms) against keras Conv2D, and
VGGPreprocessing."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from coseg_tf.layers import IMPLEMENTATIONS, DilatedConv2D, VGGPreprocessing

# (batch, height, width, cin, filters, kernel_size, dilation)
CASES = [
    (2, 21, 21, 6, 5, 3, 12),   # fc6 on a 161^2 crop
    (1, 41, 33, 4, 3, 3, 12),   # fc6 on a 321 x 257 crop
    (2, 5, 7, 3, 4, 3, 12),     # map smaller than the dilation: only the centre tap reads
    (2, 13, 12, 3, 4, 3, 12),   # one row/column of overlap for the outer taps
    (1, 1, 1, 3, 2, 3, 3),      # a single pixel
    (2, 9, 10, 3, 4, 3, 2),     # conv5's dilation
    (1, 8, 11, 3, 4, (2, 4), (3, 2)),  # even, non-square kernel and unequal dilations
    (1, 6, 6, 2, 3, 3, 1),      # no dilation
]


def _pair_with_conv2d(batch, height, width, cin, filters, kernel_size, dilation,
                      implementation="taps"):
    """A DilatedConv2D and a keras Conv2D holding the same random kernel and bias."""
    fast = DilatedConv2D(filters, kernel_size, dilation_rate=dilation,
                         bias_initializer="random_normal", implementation=implementation)
    reference = keras.layers.Conv2D(filters, kernel_size, dilation_rate=dilation,
                                    padding="same")
    fast.build((batch, height, width, cin))
    reference.build((batch, height, width, cin))
    reference.set_weights(fast.get_weights())
    return fast, reference


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[1:3])) +
                         f"_d{c[-1]}")
def test_matches_keras_conv2d_outputs_and_gradients(case, implementation):
    fast, reference = _pair_with_conv2d(*case, implementation=implementation)
    x = tf.random.stateless_normal(case[:4], seed=(1, 2))

    def outputs_and_grads(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            # A non-uniform weighting so every output position counts differently.
            loss = tf.reduce_sum(y * tf.random.stateless_normal(y.shape, seed=(3, 4)))
        grads = tape.gradient(loss, [x, layer.kernel, layer.bias])
        return y, grads

    y_fast, grads_fast = outputs_and_grads(fast)
    y_ref, grads_ref = outputs_and_grads(reference)
    assert y_fast.shape == y_ref.shape == (*case[:3], case[4])
    np.testing.assert_allclose(y_fast, y_ref, atol=1e-5)
    for name, g_fast, g_ref in zip(("input", "kernel", "bias"), grads_fast, grads_ref):
        np.testing.assert_allclose(g_fast, g_ref, atol=1e-4, err_msg=f"d loss / d {name}")


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_dynamic_spatial_shape_inside_tf_function(implementation):
    fast, reference = _pair_with_conv2d(2, 21, 17, 3, 4, 3, 12, implementation)
    run = tf.function(fast, input_signature=[tf.TensorSpec([None, None, None, 3])])
    for height, width in ((21, 17), (5, 9), (30, 13)):
        x = tf.random.stateless_normal([2, height, width, 3], seed=(height, width))
        np.testing.assert_allclose(run(x), reference(x), atol=1e-5)


def test_static_shape_is_kept_in_a_graph():
    layer = DilatedConv2D(4, 3, dilation_rate=12)

    @tf.function
    def run(x):
        y = layer(x)
        assert y.shape == (2, 9, 30, 4), y.shape
        return y

    run(tf.zeros([2, 9, 30, 3]))


def test_variables_look_like_conv2d():
    fast, reference = _pair_with_conv2d(1, 8, 8, 5, 7, 3, 12)
    assert [v.path.split("/")[-1] for v in fast.weights] == ["kernel", "bias"]
    assert [tuple(v.shape) for v in fast.weights] == [tuple(v.shape) for v in reference.weights]
    no_bias = DilatedConv2D(7, 3, dilation_rate=2, use_bias=False)
    no_bias.build((1, 8, 8, 5))
    assert [v.path.split("/")[-1] for v in no_bias.weights] == ["kernel"]


def test_activation_and_no_bias():
    fast = DilatedConv2D(3, 3, dilation_rate=2, activation="relu", use_bias=False)
    reference = keras.layers.Conv2D(3, 3, dilation_rate=2, padding="same",
                                    activation="relu", use_bias=False)
    x = tf.random.stateless_normal([1, 7, 7, 2], seed=(5, 6))
    fast.build(x.shape)
    reference.build(x.shape)
    reference.set_weights(fast.get_weights())
    y = fast(x)
    assert float(tf.reduce_min(y)) == 0.0
    np.testing.assert_allclose(y, reference(x), atol=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_get_config_round_trip(implementation):
    layer = DilatedConv2D(8, 3, dilation_rate=12, activation="relu", name="fc6",
                          kernel_regularizer=keras.regularizers.L2(5e-4),
                          implementation=implementation)
    layer.build((1, 5, 5, 2))
    config = layer.get_config()
    clone = DilatedConv2D.from_config(config)
    assert clone.get_config() == config
    assert config["dilation_rate"] == (12, 12) and config["name"] == "fc6"
    assert config["implementation"] == implementation
    # Also through keras' registry, as a saved model would be read.
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, DilatedConv2D)
    assert restored.get_config() == config
    x = tf.random.stateless_normal([1, 5, 5, 2], seed=(7, 8))
    assert restored.built  # the serialized build config rebuilds it
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(restored(x), layer(x), atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(filters=0, kernel_size=3), "filters"),
    (dict(filters=4, kernel_size=(3, 3, 3)), "kernel_size"),
    (dict(filters=4, kernel_size=3, dilation_rate=0), "dilation_rate"),
    (dict(filters=4, kernel_size=3, implementation="cudnn"), "implementation"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DilatedConv2D(**kwargs)


def test_vgg_preprocessing_flips_to_bgr_and_subtracts_means():
    rgb = np.array([[[[10.0, 20.0, 30.0], [255.0, 0.0, 128.0]]]], np.float32)
    expected = rgb[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    np.testing.assert_allclose(VGGPreprocessing()(rgb), expected, atol=1e-4)
    np.testing.assert_allclose(
        VGGPreprocessing()(rgb), keras.applications.vgg16.preprocess_input(rgb.copy()),
        atol=1e-4)
