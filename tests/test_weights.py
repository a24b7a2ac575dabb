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


# === Keras' cache: --init=vgg16 without --init_weights ===

def _origin(monkeypatch, tmp_path, data, file_hash=None):
    """Points the fetch at a file:// origin holding `data`, with a cache in tmp_path."""
    import hashlib

    from coseg_tf import weights

    source = tmp_path / "origin" / weights.VGG16_WEIGHTS_FILE
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(data)
    monkeypatch.setattr(weights, "VGG16_WEIGHTS_ORIGIN", source.as_uri())
    monkeypatch.setattr(weights, "VGG16_WEIGHTS_MD5",
                        file_hash or hashlib.md5(data).hexdigest())
    monkeypatch.setattr(weights, "VGG16_CACHE_DIR", str(tmp_path / "keras_home"))
    return source


def test_the_published_origin_and_hash_are_keras_own():
    from keras.src.applications import vgg16

    from coseg_tf import weights

    assert weights.VGG16_WEIGHTS_ORIGIN == vgg16.WEIGHTS_PATH_NO_TOP
    # The file_hash keras.applications.vgg16 passes to get_file for the notop file.
    import inspect
    assert f'file_hash="{weights.VGG16_WEIGHTS_MD5}"' in inspect.getsource(vgg16.VGG16)


def test_fetched_once_through_keras_cache_and_loaded(monkeypatch, tmp_path):
    from coseg_tf import weights

    arrays = _vgg_arrays(WIDTH)
    local = tmp_path / "local.h5"
    _write_legacy_h5(local, arrays)
    source = _origin(monkeypatch, tmp_path, local.read_bytes())
    path = weights.vgg16_weights_path(None)
    assert path == str(tmp_path / "keras_home" / "models" / weights.VGG16_WEIGHTS_FILE)
    source.unlink()  # the cached copy serves from now on (its hash checked again)
    assert weights.vgg16_weights_path(None) == path
    assert weights.vgg16_weights_path(str(local)) == str(local)
    model = build_deeplab_largefov(num_classes=3, width_multiplier=WIDTH)
    load_vgg16_weights(model, path)
    np.testing.assert_array_equal(model.get_layer("block5_conv3").bias.numpy(),
                                  arrays["block5_conv3"][1])


def test_a_file_without_the_published_hash_is_refused_and_removed(monkeypatch, tmp_path):
    from coseg_tf import weights

    _origin(monkeypatch, tmp_path, b"not the VGG16 weights",
            file_hash="6d6bbae143d832006294945121d1f1fc")  # the published one
    with pytest.raises(weights.WeightsUnavailableError, match="published MD5 hash") as err:
        weights.fetch_vgg16_weights()
    assert "--init_weights=PATH" in str(err.value)
    assert not (tmp_path / "keras_home" / "models" / weights.VGG16_WEIGHTS_FILE).exists()


def test_without_network_the_error_says_to_pass_init_weights(monkeypatch, tmp_path):
    from coseg_tf import train_lib, weights

    monkeypatch.setattr(weights, "VGG16_WEIGHTS_ORIGIN", (tmp_path / "absent.h5").as_uri())
    monkeypatch.setattr(weights, "VGG16_CACHE_DIR", str(tmp_path / "keras_home"))
    with pytest.raises(weights.WeightsUnavailableError, match="cannot fetch") as err:
        weights.fetch_vgg16_weights()
    assert "without network, pass --init_weights=PATH" in str(err.value)
    # train.py refuses before any work, naming the flags.
    import pipeline_helpers as ph
    ph.write_split(tmp_path, "train", [ph.synthetic_arrays(f"x{i}", seed=i) for i in range(2)],
                   1)
    config = train_lib.TrainConfig(train_data=str(tmp_path / "train-*"), num_labeled=1,
                                   model_dir=str(tmp_path / "run"), init="vgg16")
    with pytest.raises(train_lib.ConfigError, match="--init=vgg16 without --init_weights"):
        train_lib.run_training(config)
    assert not (tmp_path / "run").exists()
