"""The network's stride-8 grid at full resolution: bilinear upsampling of logits.

Feature cell k of DeepLab-LargeFOV sits on input pixel 8k (see `coseg_tf.masking`,
which samples the human region on the same grid). Evaluation and export both
upsample through `upsample_logits`, so that they predict the same labels.
"""

from __future__ import annotations

import tensorflow as tf

from coseg_tf.masking import OUTPUT_STRIDE


def _lerp_axis(x, out_size, axis: int, stride: int):
    """`x` interpolated along `axis` to `out_size`, input cell k at output index stride*k."""
    in_size = tf.shape(x)[axis]
    # pos: [out] the feature coordinate read by each output pixel
    pos = tf.range(out_size, dtype=tf.float32) / float(stride)
    lower = tf.minimum(tf.cast(tf.floor(pos), tf.int32), in_size - 1)
    upper = tf.minimum(lower + 1, in_size - 1)
    # Past the last cell lower == upper: the weight no longer matters (edge value).
    weight = tf.clip_by_value(pos - tf.cast(lower, tf.float32), 0.0, 1.0)
    shape = [1] * x.shape.rank
    shape[axis] = -1
    weight = tf.reshape(weight, shape)
    a = tf.gather(x, lower, axis=axis)
    b = tf.gather(x, upper, axis=axis)
    return a + (b - a) * weight


def upsample_logits(logits, size, *, stride: int = OUTPUT_STRIDE) -> tf.Tensor:
    """Bilinear upsampling of stride-`stride` logits to `size`, cell k on pixel stride*k.

    Args:
      logits: float [B, h, w, C], cell (r, c) centred on input pixel (stride r, stride c).
      size: (H, W) of the input image (ints or scalar int tensors).
      stride: the network's output stride.

    Returns:
      float32 [B, H, W, C]; pixel (y, x) reads (y / stride, x / stride), pixels past the
      last cell take the last cell's value (see the module docstring).
    """
    logits = tf.cast(logits, tf.float32)
    out = _lerp_axis(logits, size[0], 1, stride)
    return _lerp_axis(out, size[1], 2, stride)
