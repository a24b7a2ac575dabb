"""VGG16 ImageNet convolution weights for DeepLab-LargeFOV: fetched once, loaded by name.

Where the file comes from: `--init_weights=PATH` (a local copy, or any `tf.io.gfile`
path), or, without it, Keras' own cache: `fetch_vgg16_weights` calls
`keras.utils.get_file` for `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` from
the origin `keras.applications.vgg16` uses, with the MD5 hash Keras publishes for it
(checked after a download and on every later use of the cached copy, ~/.keras/models/
or $KERAS_HOME/models/). A failed fetch (no network) is an error that says to pass
`--init_weights=PATH`; a file whose hash differs is removed from the cache and refused.
`VGG16_WEIGHTS_ORIGIN`, `VGG16_WEIGHTS_MD5` and `VGG16_CACHE_DIR` are module constants
the tests point at a small file:// origin.

Two layouts are read:

- legacy Keras HDF5, as `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`
  (keras.applications' ImageNet file): root attribute `layer_names`; one group per
  layer with attribute `weight_names` (e.g. b'block1_conv1/kernel:0', or Keras 1's
  b'block1_conv1_W_1:0'), each naming a dataset in that group;
- Keras 3 `.weights.h5` (`model.save_weights` of `keras.applications.VGG16` or of a
  model with the same layer names): groups `layers/<key>/vars` whose attribute `name`
  is the layer name, datasets `vars/0`, `vars/1`.

Only the 13 convolutions block1_conv1 ... block5_conv3 are loaded; fc6, fc7 and fc8 keep
their fresh initialisation. Within a layer the kernel is the 4-D array and the bias the
1-D one, whatever their names. Every shape is checked before anything is assigned, so a
failed load leaves the model untouched (a width-multiplied model against a full-width
file is the usual mismatch). Paths go through `tf.io.gfile`, so `gs://...` works too.
"""

import os

from absl import logging
import h5py
import numpy as np
import tensorflow as tf

from coseg_tf.model import VGG16_CONV_NAMES

# Keras' ImageNet VGG16 without the classifier (keras.applications.vgg16).
VGG16_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_WEIGHTS_ORIGIN = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                        "vgg16/" + VGG16_WEIGHTS_FILE)
# The file_hash keras.applications.vgg16 passes to get_file for this file (MD5).
VGG16_WEIGHTS_MD5 = "6d6bbae143d832006294945121d1f1fc"
# None: Keras' cache directory ($KERAS_HOME, else ~/.keras); the file goes in models/.
VGG16_CACHE_DIR = None


class WeightsUnavailableError(OSError):
    """The VGG16 weights could not be fetched; the message says what to pass instead."""


def fetch_vgg16_weights() -> str:
    """The local path of Keras' VGG16 notop weights, downloaded once into Keras' cache.

    Returns:
      The cached file (hash checked), e.g. ~/.keras/models/
      vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5.

    Raises:
      WeightsUnavailableError: the origin cannot be reached (no network), or the file
        does not have the published hash (the bad copy is removed from the cache);
        the message names the origin and says to pass --init_weights=PATH.
    """
    import keras

    origin = VGG16_WEIGHTS_ORIGIN
    # Keras' own default ($KERAS_HOME, else ~/.keras), spelled out to find the file.
    cache_dir = os.path.expanduser(VGG16_CACHE_DIR or os.environ.get("KERAS_HOME")
                                   or os.path.join("~", ".keras"))
    try:  # get_file falls back to /tmp/.keras for a directory that does not exist yet
        os.makedirs(cache_dir, exist_ok=True)
    except OSError:
        pass  # not writable: get_file's own fallback, /tmp/.keras
    if not os.access(cache_dir, os.W_OK):
        cache_dir = os.path.join("/tmp", ".keras")
    advice = (f"pass --init_weights=PATH to a local copy of {VGG16_WEIGHTS_FILE} (the "
              "file keras.applications.VGG16(include_top=False) downloads), or train "
              "with --init=random")
    try:
        return keras.utils.get_file(VGG16_WEIGHTS_FILE, origin, cache_subdir="models",
                                    file_hash=VGG16_WEIGHTS_MD5, hash_algorithm="md5",
                                    cache_dir=cache_dir)
    except ValueError as e:  # "Incomplete or corrupted file detected": the hash differs
        cache = os.path.join(cache_dir, "models", VGG16_WEIGHTS_FILE)
        if os.path.exists(cache):
            os.remove(cache)
        raise WeightsUnavailableError(
            f"the VGG16 weights fetched from {origin} do not have the published MD5 hash "
            f"{VGG16_WEIGHTS_MD5} ({e}); the copy was removed from the cache; "
            + advice) from None
    except Exception as e:  # get_file raises Exception("URL fetch failure on ...")
        raise WeightsUnavailableError(f"cannot fetch the VGG16 weights from {origin} "
                                      f"({e}); without network, {advice}") from None


def vgg16_weights_path(init_weights=None) -> str:
    """`init_weights` when given (a local or tf.io.gfile path), else
    `fetch_vgg16_weights()` (WeightsUnavailableError when that fails)."""
    return str(init_weights) if init_weights else fetch_vgg16_weights()


def _string_list_attr(attrs, name):
    """A list-of-strings attribute, also when HDF5 split it into name0, name1, ...."""
    if name in attrs:
        values = list(attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in attrs:
            values.extend(attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _legacy_layers(h5, path):
    """{layer name: [arrays]} of a legacy Keras HDF5 weights file."""
    layers = {}
    for name in _string_list_attr(h5.attrs, "layer_names"):
        if name not in h5:
            raise ValueError(f"{path}: `layer_names` lists '{name}' but the file has no "
                             f"group of that name")
        group = h5[name]
        arrays = []
        for weight_name in _string_list_attr(group.attrs, "weight_names"):
            if weight_name not in group:
                raise ValueError(f"{path}: layer '{name}' lists weight '{weight_name}' "
                                 f"but has no dataset of that name")
            arrays.append(np.asarray(group[weight_name]))
        layers[name] = arrays
    return layers


def _keras3_layers(h5):
    """{layer name: [arrays]} of a Keras 3 `.weights.h5` file (top-level layers)."""
    layers = {}
    for group in h5["layers"].values():
        if not isinstance(group, h5py.Group) or "vars" not in group:
            continue
        variables = group["vars"]
        name = variables.attrs.get("name")
        if name is None:
            continue
        name = name.decode("utf8") if isinstance(name, bytes) else str(name)
        keys = sorted(variables.keys(), key=int)
        layers[name] = [np.asarray(variables[k]) for k in keys]
    return layers


def _read_layers(path):
    """{layer name: [arrays]} of the weights file at `path`, either layout."""
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"VGG16 weights file not found: {path} (nothing is downloaded; pass the path "
            f"of a local vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5, or train with "
            f"random initialisation)")
    with tf.io.gfile.GFile(path, "rb") as file_object:
        try:
            h5 = h5py.File(file_object, "r")
        except OSError as error:
            raise ValueError(f"{path}: not an HDF5 weights file ({error})") from error
        with h5:
            if "layer_names" in h5.attrs or "layer_names0" in h5.attrs:
                return _legacy_layers(h5, path)
            if "layers" in h5 and isinstance(h5["layers"], h5py.Group):
                return _keras3_layers(h5)
            raise ValueError(
                f"{path}: neither a legacy Keras HDF5 weights file (root attribute "
                f"`layer_names`) nor a Keras 3 .weights.h5 file (group `layers`)")


def _kernel_and_bias(arrays, layer_name, path):
    """The (4-D kernel, 1-D bias) among a layer's arrays."""
    kernels = [a for a in arrays if a.ndim == 4]
    biases = [a for a in arrays if a.ndim == 1]
    if len(arrays) != 2 or len(kernels) != 1 or len(biases) != 1:
        shapes = [a.shape for a in arrays]
        raise ValueError(f"{path}: layer '{layer_name}' should hold a 4-D kernel and a 1-D "
                         f"bias, found arrays of shapes {shapes}")
    return kernels[0], biases[0]


def load_vgg16_weights(model, path):
    """Loads VGG16 ImageNet convolution weights into `model`'s block*_conv* layers.

    Args:
        model: a built model with layers named block1_conv1 ... block5_conv3 (as
            `build_deeplab_largefov` makes), each with `kernel` and `bias`.
        path: the weights file, legacy Keras HDF5 (the keras.applications notop file)
            or Keras 3 `.weights.h5`; a local path or any `tf.io.gfile` path.

    Returns:
        The names of the layers loaded, in order (the 13 VGG16 convolutions).

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not in either layout, lacks one of the convolutions, or
            a shape differs from the model's (each mismatch named, with both shapes);
            the model lacks one of the convolutions. Nothing is assigned then.
    """
    path = str(path)
    targets = {}
    for name in VGG16_CONV_NAMES:
        try:
            targets[name] = model.get_layer(name)
        except ValueError as error:
            raise ValueError(f"load_vgg16_weights: the model '{model.name}' has no layer "
                             f"'{name}' to load VGG16 weights into") from error

    stored = _read_layers(path)
    missing = [name for name in VGG16_CONV_NAMES if name not in stored]
    if missing:
        raise ValueError(f"{path}: no weights for layer(s) {', '.join(missing)} "
                         f"(is this a VGG16 weights file?)")

    values, mismatches = {}, []
    for name in VGG16_CONV_NAMES:
        layer = targets[name]
        kernel, bias = _kernel_and_bias(stored[name], name, path)
        for what, array, variable in (("kernel", kernel, layer.kernel),
                                      ("bias", bias, layer.bias)):
            if tuple(array.shape) != tuple(variable.shape):
                mismatches.append(f"{name}/{what}: file {tuple(array.shape)} vs model "
                                  f"{tuple(variable.shape)}")
        values[name] = (kernel, bias)
    if mismatches:
        raise ValueError(
            f"{path}: shape mismatch between the weights file and the model "
            f"(ImageNet VGG16 weights need width_multiplier=1.0): "
            + "; ".join(mismatches))

    for name in VGG16_CONV_NAMES:
        layer = targets[name]
        kernel, bias = values[name]
        layer.kernel.assign(kernel.astype(layer.kernel.dtype))
        layer.bias.assign(bias.astype(layer.bias.dtype))
    logging.info("Loaded VGG16 weights for %d layers from %s", len(VGG16_CONV_NAMES), path)
    return list(VGG16_CONV_NAMES)
