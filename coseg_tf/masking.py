"""The masking layer (Dai et al., CVPR 2015) and the region resize the losses share.

The network sees the human region `y` (B x H x W x 1, 1 inside a person box) and multiplies
its fc7 features `h` (B x h x w x F) by `y` brought to the feature grid: m = h * y_hat.
fc8 reads `m`, and the cosegmentation loss compares positions of `m`. The losses must use
exactly the region the layer used, so both call `resize_region`.

Alignment. The network's three stride-2 max pools pad one pixel on every side (Caffe's
`pad: 1`, see `coseg_tf/model.py`), so output cell k of each pool is centred on input
pixel 2k, whatever the parity of the size, and the map size is ceil(n / 2). After three of
them, feature cell (r, c) sits on input pixel (8r, 8c) and the grid is ceil(H / 8) x
ceil(W / 8): `resize_region` picks exactly those pixels, region[:, ::8, ::8], by nearest
sampling. (TensorFlow's own 'same' pooling pads only at the bottom/right for even sizes,
which would put the cell on pixel 8r + 7 for H = 320 and on 8r for H = 321.)
"""

import keras
import tensorflow as tf

# The network's output stride: three stride-2 pools.
OUTPUT_STRIDE = 8


def _sample_indices(in_size, out_size, stride):
    """Input indices [out_size] that nearest sampling reads for each output cell.

    On the stride grid (out_size == ceil(in_size / stride)) cell k reads pixel k * stride.
    Otherwise (a size that is not the network's) the usual nearest rule with half-pixel
    centres: cell k reads pixel floor((k + 0.5) * in_size / out_size).
    """
    k = tf.range(out_size, dtype=tf.int32)
    on_grid = tf.equal(out_size, (in_size + stride - 1) // stride)
    grid = k * stride
    general = tf.minimum(((2 * k + 1) * in_size) // (2 * out_size), in_size - 1)
    return tf.where(on_grid, grid, general)


def resize_region(region, size, *, stride=OUTPUT_STRIDE):
    """Brings a region (or label) map to the feature grid by nearest sampling.

    When `size` is the network's grid (h, w) == (ceil(H / stride), ceil(W / stride)),
    feature cell (r, c) takes pixel (stride * r, stride * c), the input pixel it is
    centred on; that is region[:, ::stride, ::stride]. Any other size falls back to
    nearest sampling with half-pixel centres (as `tf.image.resize(..., 'nearest')`).
    Values are only picked, never blended, so the dtype is kept and an integer label
    map stays a label map.

    Args:
        region: [B, H, W] or [B, H, W, C] tensor of any dtype (H, W may be dynamic).
        size: (h, w) as ints or scalar int tensors, e.g. `tf.shape(features)[1:3]`.
        stride: int, the network's output stride (8 for DeepLab-LargeFOV).

    Returns:
        [B, h, w] or [B, h, w, C] tensor, the dtype of `region`.
    """
    region = tf.convert_to_tensor(region)
    if region.shape.rank is not None and region.shape.rank not in (3, 4):
        raise ValueError("resize_region: `region` must be [B, H, W] or [B, H, W, C], "
                         f"got shape {region.shape}")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"resize_region: `stride` must be a positive int, got {stride!r}")
    height, width = tf.shape(region)[1], tf.shape(region)[2]
    out_height = tf.cast(size[0], tf.int32)
    out_width = tf.cast(size[1], tf.int32)
    rows = _sample_indices(height, out_height, stride)
    cols = _sample_indices(width, out_width, stride)
    resized = tf.gather(tf.gather(region, rows, axis=1), cols, axis=2)
    # Keep the static shape where it is known.
    static_size = [s if isinstance(s, int) else tf.get_static_value(s)
                   for s in (size[0], size[1])]
    resized.set_shape([region.shape[0], *[None if s is None else int(s)
                                          for s in static_size], *region.shape[3:]])
    return resized


@keras.saving.register_keras_serializable(package="coseg_tf")
class HumanMasking(keras.layers.Layer):
    """Multiplies features by the human region brought to the feature grid.

    Takes `[features, human_region]`: features [B, h, w, F] and the region
    [B, H, W, 1] at input resolution (1 inside a human, 0 outside). Returns
    m = features * resize_region(human_region, (h, w)), [B, h, w, F]: features outside
    the region become zero. The resize is the one the losses use (see `resize_region`).

    Args:
        stride: int, the output stride relating the region's H x W to the feature
            map's h x w (h = ceil(H / stride)); 8 for DeepLab-LargeFOV.
        **kwargs: keyword arguments of `keras.layers.Layer` (`name`, `dtype`, ...).

    Example:

    >>> features = tf.ones([1, 41, 41, 8])
    >>> region = tf.concat([tf.ones([1, 321, 160, 1]), tf.zeros([1, 321, 161, 1])], 2)
    >>> m = HumanMasking(name="masking")([features, region])
    >>> m.shape, float(m[0, 0, 19, 0]), float(m[0, 0, 20, 0])
    (TensorShape([1, 41, 41, 8]), 1.0, 0.0)
    """

    def __init__(self, stride=OUTPUT_STRIDE, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"HumanMasking: `stride` must be a positive int, got {stride!r}")
        self.stride = stride

    def call(self, inputs):
        features, region = inputs
        # features: [B, h, w, F]; region: [B, H, W, 1]
        features = tf.convert_to_tensor(features)
        size = tf.shape(features)[1:3]
        size = [features.shape[1] or size[0], features.shape[2] or size[1]]
        # region_hat: [B, h, w, 1]
        region_hat = resize_region(region, size, stride=self.stride)
        return features * tf.cast(region_hat, features.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update({"stride": self.stride})
        return config
