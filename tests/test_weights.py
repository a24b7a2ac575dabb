"""Tests of coseg_tf.weights: VGG16 weights from legacy Keras HDF5 and Keras 3 files."""

import h5py
import numpy as np
import pytest
import keras

from coseg_tf.model import VGG16_CONV_NAMES, build_deeplab_largefov
from coseg_tf.weights import load_vgg16_weights

WIDTH = 0.25


def _vgg_arrays(width_multiplier, seed=0):
    """{conv name: (kernel, bias)} of random values with a width-multiplied VGG16's shapes."""
    rng = np.random.default_rng(seed)
    shapes = build_deeplab_largefov(num_classes=2, width_multiplier=width_multiplier)
    arrays = {}
    for name in VGG16_CONV_NAMES:
        layer = shapes.get_layer(name)
        arrays[name] = (rng.normal(size=layer.kernel.shape).astype(np.float32),
                        rng.normal(size=layer.bias.shape).astype(np.float32))
    return arrays


def _write_legacy_h5(path, arrays, naming="keras2", extra_layers=("input_1", "block1_pool")):
    """Writes `arrays` in the layout of vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5."""
    layer_names = [extra_layers[0]] + list(arrays) + list(extra_layers[1:])
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode("utf8") for n in layer_names]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.0"
        for name in layer_names:
            group = f.create_group(name)
            if name not in arrays:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            if naming == "keras2":
                weight_names = [f"{name}/kernel:0", f"{name}/bias:0"]
            else:  # Keras 1, as in the 2016 release of the file.
                weight_names = [f"{name}_W_1:0", f"{name}_b_1:0"]
            group.attrs["weight_names"] = [w.encode("utf8") for w in weight_names]
            for weight_name, value in zip(weight_names, arrays[name]):
                group.create_dataset(weight_name, data=value)


@pytest.mark.parametrize("naming", ["keras2", "keras1"])
def test_legacy_file_lands_in_the_named_layers(tmp_path, naming):
    arrays = _vgg_arrays(WIDTH, seed=1)
    path = tmp_path / "vgg16_notop.h5"
    _write_legacy_h5(path, arrays, naming=naming)
    model = build_deeplab_largefov(num_classes=3, width_multiplier=WIDTH)
    head_before = {n: [w.copy() for w in model.get_layer(n).get_weights()]
                   for n in ("fc6", "fc7", "fc8")}

    loaded = load_vgg16_weights(model, path)

    assert loaded == list(VGG16_CONV_NAMES)
    for name, (kernel, bias) in arrays.items():
        layer = model.get_layer(name)
        np.testing.assert_array_equal(layer.kernel.numpy(), kernel, err_msg=name)
        np.testing.assert_array_equal(layer.bias.numpy(), bias, err_msg=name)
    for name, before in head_before.items():
        for now, then in zip(model.get_layer(name).get_weights(), before):
            np.testing.assert_array_equal(now, then, err_msg=f"{name} must keep its init")
    # Keras' own legacy reader agrees on the same file (so the layout is the real one).
    by_keras = build_deeplab_largefov(num_classes=3, width_multiplier=WIDTH)
    by_keras.load_weights(path, by_name=True)
    for name in VGG16_CONV_NAMES:
        for ours, theirs in zip(model.get_layer(name).get_weights(),
                                by_keras.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs, err_msg=name)


def test_keras3_weights_file(tmp_path):
    source = build_deeplab_largefov(num_classes=3, width_multiplier=WIDTH)
    path = tmp_path / "source.weights.h5"
    source.save_weights(path)
    target = build_deeplab_largefov(num_classes=3, width_multiplier=WIDTH)
    fc6_before = target.get_layer("fc6").kernel.numpy().copy()

    load_vgg16_weights(target, path)

    for name in VGG16_CONV_NAMES:
        for got, expected in zip(target.get_layer(name).get_weights(),
                                 source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, expected, err_msg=name)
    np.testing.assert_array_equal(target.get_layer("fc6").kernel.numpy(), fc6_before)


def test_keras_applications_vgg16_weights_file(tmp_path):
    """A `.weights.h5` of keras.applications.VGG16 (full width) into a full-width model."""
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16.weights.h5"
    vgg.save_weights(path)
    model = build_deeplab_largefov(num_classes=2)
    load_vgg16_weights(model, path)
    for name in ("block1_conv1", "block5_conv3"):
        np.testing.assert_array_equal(model.get_layer(name).kernel.numpy(),
                                      vgg.get_layer(name).kernel.numpy())


def test_missing_file_names_the_file(tmp_path):
    model = build_deeplab_largefov(num_classes=2, width_multiplier=WIDTH)
    path = tmp_path / "nowhere" / "vgg16_notop.h5"
    with pytest.raises(FileNotFoundError, match="nowhere/vgg16_notop.h5"):
        load_vgg16_weights(model, path)


def test_file_missing_a_block_layer(tmp_path):
    arrays = _vgg_arrays(WIDTH)
    del arrays["block5_conv3"]
    path = tmp_path / "partial.h5"
    _write_legacy_h5(path, arrays)
    model = build_deeplab_largefov(num_classes=2, width_multiplier=WIDTH)
    with pytest.raises(ValueError, match=r"partial\.h5.*block5_conv3"):
        load_vgg16_weights(model, path)


def test_shape_mismatch_names_layer_and_both_shapes_and_assigns_nothing(tmp_path):
    path = tmp_path / "wider.h5"
    _write_legacy_h5(path, _vgg_arrays(0.5))
    model = build_deeplab_largefov(num_classes=2, width_multiplier=WIDTH)
    before = model.get_layer("block1_conv1").kernel.numpy().copy()
    with pytest.raises(ValueError) as error:
        load_vgg16_weights(model, path)
    message = str(error.value)
    assert "wider.h5" in message
    assert r"block1_conv1/kernel: file (3, 3, 3, 32) vs model (3, 3, 3, 16)" in message
    assert "width_multiplier" in message
    np.testing.assert_array_equal(model.get_layer("block1_conv1").kernel.numpy(), before)


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"this is not HDF5")
    model = build_deeplab_largefov(num_classes=2, width_multiplier=WIDTH)
    with pytest.raises(ValueError, match="weights.h5.*not an HDF5"):
        load_vgg16_weights(model, path)


def test_hdf5_file_of_another_layout(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    model = build_deeplab_largefov(num_classes=2, width_multiplier=WIDTH)
    with pytest.raises(ValueError, match="other.h5.*layer_names"):
        load_vgg16_weights(model, path)


def test_layer_with_wrong_arrays(tmp_path):
    arrays = _vgg_arrays(WIDTH)
    kernel, _ = arrays["block2_conv1"]
    arrays["block2_conv1"] = (kernel, kernel)  # two kernels, no bias
    path = tmp_path / "odd.h5"
    _write_legacy_h5(path, arrays)
    model = build_deeplab_largefov(num_classes=2, width_multiplier=WIDTH)
    with pytest.raises(ValueError, match=r"odd\.h5.*block2_conv1.*1-D bias"):
        load_vgg16_weights(model, path)


def test_model_without_vgg_layers(tmp_path):
    path = tmp_path / "vgg.h5"
    _write_legacy_h5(path, _vgg_arrays(WIDTH))
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="block1_conv1")(inputs),
                        name="tiny")
    with pytest.raises(ValueError, match="tiny.*block1_conv2"):
        load_vgg16_weights(model, path)
