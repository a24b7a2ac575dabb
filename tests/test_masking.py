"""Tests of coseg_tf.masking: resize_region's stride-8 alignment and HumanMasking."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from coseg_tf.masking import HumanMasking, resize_region


def _random_region(shape, seed):
    return (np.random.default_rng(seed).random(shape) > 0.5).astype(np.float32)


@pytest.mark.parametrize("height, width", [(321, 321), (320, 161), (17, 9), (8, 1), (1, 1)])
def test_resize_region_on_the_stride_grid_takes_every_eighth_pixel(height, width):
    region = _random_region([2, height, width, 1], seed=height * 1000 + width)
    size = (-(-height // 8), -(-width // 8))
    resized = resize_region(region, size)
    assert resized.shape == (2, *size, 1)
    np.testing.assert_array_equal(resized, region[:, ::8, ::8])


def test_resize_region_with_dynamic_shapes_in_a_graph():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1])])
    def run(region):
        size = (tf.shape(region)[1] + 7) // 8, (tf.shape(region)[2] + 7) // 8
        return resize_region(region, size)

    for height, width in ((41, 23), (64, 65)):
        region = _random_region([1, height, width, 1], seed=height)
        np.testing.assert_array_equal(run(region), region[:, ::8, ::8])


def test_resize_region_other_sizes_use_nearest_with_half_pixel_centres():
    region = np.arange(2 * 12 * 10, dtype=np.float32).reshape([2, 12, 10, 1])
    for size in ((5, 5), (3, 7), (12, 10), (24, 20)):
        expected = tf.image.resize(region, size, method="nearest")
        np.testing.assert_array_equal(resize_region(region, size), expected,
                                      err_msg=f"size {size}")


def test_resize_region_keeps_integer_labels_and_rank_three():
    labels = np.random.default_rng(0).integers(0, 6, size=[2, 33, 17]).astype(np.int32)
    resized = resize_region(labels, (5, 3))
    assert resized.dtype == tf.int32
    np.testing.assert_array_equal(resized, labels[:, ::8, ::8])


def test_resize_region_rejects_bad_rank():
    with pytest.raises(ValueError, match="region"):
        resize_region(tf.zeros([4, 4]), (1, 1))


def test_masking_zeroes_features_outside_the_region():
    features = np.random.default_rng(1).normal(size=[2, 41, 21, 5]).astype(np.float32)
    region = _random_region([2, 321, 161, 1], seed=2)
    masked = HumanMasking(name="masking")([features, region])
    expected = features * region[:, ::8, ::8]
    np.testing.assert_allclose(masked, expected)
    assert np.all(np.asarray(masked)[np.broadcast_to(region[:, ::8, ::8] == 0,
                                                     masked.shape)] == 0)
    assert np.count_nonzero(masked) > 0


def test_masking_box_region_by_hand():
    # A box covering input columns 0..159 of a 321-wide image: feature columns 0..19
    # (pixels 0, 8, ..., 152) are inside, column 20 (pixel 160) is outside.
    features = tf.ones([1, 41, 41, 2])
    region = np.zeros([1, 321, 321, 1], np.float32)
    region[:, :, :160] = 1
    masked = np.asarray(HumanMasking()([features, region]))
    assert np.all(masked[:, :, :20] == 1) and np.all(masked[:, :, 20:] == 0)


def test_masking_in_a_graph_with_unknown_sizes():
    layer = HumanMasking()
    run = tf.function(lambda f, r: layer([f, r]), input_signature=[
        tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, None, None, 1])])
    features = np.ones([1, 3, 2, 3], np.float32)
    region = _random_region([1, 17, 9, 1], seed=3)
    np.testing.assert_allclose(run(features, region), features * region[:, ::8, ::8])


def test_masking_config_round_trip():
    layer = HumanMasking(stride=4, name="masking")
    config = layer.get_config()
    assert config["stride"] == 4
    assert HumanMasking.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, HumanMasking) and restored.stride == 4
    features = tf.ones([1, 3, 3, 1])
    region = _random_region([1, 9, 9, 1], seed=4)
    np.testing.assert_allclose(restored([features, region]), region[:, ::4, ::4])


def test_masking_rejects_bad_stride():
    with pytest.raises(ValueError, match="stride"):
        HumanMasking(stride=0)
