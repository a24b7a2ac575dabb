"""Data augmentation ops on example dicts: flip, scale, crop-or-pad.

Each op takes a dict of one example and returns a new dict, transforming every spatial
map it holds together, so image, labels and human region stay aligned:

  image               [H, W, 3]   bilinear; padded with the ImageNet mean RGB, so that
                                  padding is zero after the model's mean subtraction
  labels,             [H, W]      nearest only (never invents a class id); padded with
  diagnostic_labels               IGNORE_LABEL = 255
  human_region        [H, W, 1]   nearest; padded with 0
  parts_fine,         [H, W]      nearest; padded with 0 (merge parts before padding to
  person_mask                     get IGNORE_LABEL there)
  boxes               [N, 4]      normalized (ymin, xmin, ymax, xmax), moved with the
                                  image (clipped to the crop)
  height, width       []          updated to the new size

Other keys (e.g. "id") pass through. The ops are stateless: randomness comes from
`tf.random.stateless_*` with an explicit seed (a shape [2] integer tensor), so an op
gives the same result for the same seed eagerly and inside `tf.data`.

The flip swaps left and right fine parts in `parts_fine` through the permutation of the
data's vocabulary (`schema.Vocabulary.flip_permutation`; Pascal-Part's by default), so a
scheme may put a left part and its right twin into different classes. On merged
"labels" it only mirrors: merge the flipped fine map (the streams do), or flip merged
labels only for schemes that merge both twins into one class (every built-in scheme
does; tests/test_augment.py checks this).
"""

from __future__ import annotations

import tensorflow as tf

from pipelines import schema

# ImageNet mean RGB of the Keras VGG16 preprocessing (DESIGN.md §2).
MEAN_RGB = (123.68, 116.779, 103.939)

LABEL_KEYS = ("labels", "diagnostic_labels")
REGION_KEY = "human_region"
MASK_KEYS = ("parts_fine", "person_mask")


def _as_seed(seed) -> tf.Tensor:
    """int64 [2] stateless seed from a [2] tensor/tuple or one Python int.

    Always int64: `stateless_split` of the same seed values gives different seeds for
    int32 and int64 (a tuple becomes int32 eagerly, a seed from tf.data is often int64).
    """
    if isinstance(seed, int):
        seed = (seed, 0)
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        raise TypeError(f"seed must be integers, got {seed.dtype}")
    return tf.ensure_shape(tf.cast(seed, tf.int64), [2])


def _maps(d: dict):
    """(key, tensor) of the spatial maps other than the image that `d` holds."""
    keys = LABEL_KEYS + (REGION_KEY,) + MASK_KEYS
    return [(k, d[k]) for k in keys if k in d]


def _image_size(d: dict):
    shape = tf.shape(d["image"])
    return shape[0], shape[1]


# === Flip ===

def flip_left_right(d: dict, permutation=None) -> dict:
    """`d` mirrored horizontally, left and right fine parts swapped.

    Args:
      d: an example dict.
      permutation: uint8 [V] table of the vocabulary's mirrored values
        (`schema.Vocabulary.flip_permutation()`); None = Pascal-Part's.
    """
    out = dict(d)
    out["image"] = tf.reverse(d["image"], axis=[1])
    for key, x in _maps(d):
        out[key] = tf.reverse(x, axis=[1])
    if "parts_fine" in d:
        if permutation is None:
            permutation = schema.flip_permutation()
        table = tf.constant(permutation, tf.uint8)  # [V]
        out["parts_fine"] = tf.gather(table, tf.cast(out["parts_fine"], tf.int32))
    if "boxes" in d:
        ymin, xmin, ymax, xmax = tf.unstack(tf.reshape(d["boxes"], [-1, 4]), 4, axis=1)
        out["boxes"] = tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=1)
    return out


def random_flip(d: dict, seed, permutation=None) -> dict:
    """`flip_left_right(d, permutation)` with probability 1/2, chosen by the stateless
    `seed`."""
    do_flip = tf.random.stateless_uniform([], _as_seed(seed)) < 0.5
    # Both branches return the same keys, dtypes and shapes.
    return tf.cond(do_flip, lambda: flip_left_right(d, permutation), lambda: dict(d))


# === Scale ===

def resize(d: dict, size) -> dict:
    """`d` resized to `size` = (height, width): image bilinear, every map nearest."""
    size = tf.cast(tf.convert_to_tensor(size), tf.int32)
    out = dict(d)
    image = tf.cast(d["image"], tf.float32)
    out["image"] = tf.image.resize(image, size, method="bilinear")
    for key, x in _maps(d):
        x3 = x if x.shape.rank == 3 else x[..., None]
        y = tf.image.resize(x3, size, method="nearest")  # keeps the dtype
        out[key] = y if x.shape.rank == 3 else y[..., 0]
    if "height" in d:
        out["height"] = tf.cast(size[0], tf.convert_to_tensor(d["height"]).dtype)
    if "width" in d:
        out["width"] = tf.cast(size[1], tf.convert_to_tensor(d["width"]).dtype)
    # Normalized boxes do not change with the image size.
    return out


def random_scale(d: dict, min_scale: float, max_scale: float, seed) -> dict:
    """`d` resized by a factor uniform in [min_scale, max_scale] (image float32 after).

    The new size is round(H * s) x round(W * s), at least 1 x 1.
    """
    if not 0 < min_scale <= max_scale:
        raise ValueError(f"need 0 < min_scale <= max_scale, got min_scale={min_scale}, "
                         f"max_scale={max_scale}")
    scale = tf.random.stateless_uniform([], _as_seed(seed), minval=min_scale,
                                        maxval=max_scale)
    h, w = _image_size(d)
    new_h = tf.maximum(1, tf.cast(tf.round(tf.cast(h, tf.float32) * scale), tf.int32))
    new_w = tf.maximum(1, tf.cast(tf.round(tf.cast(w, tf.float32) * scale), tf.int32))
    return resize(d, tf.stack([new_h, new_w]))


# === Crop or pad ===

def _crop_size(crop_size):
    if isinstance(crop_size, int):
        crop_size = (crop_size, crop_size)
    crop_size = tuple(crop_size)
    if len(crop_size) != 2 or not all(isinstance(c, int) and c > 0 for c in crop_size):
        raise ValueError(f"crop_size must be a positive int or (height, width), "
                         f"got {crop_size!r}")
    return crop_size


def crop_or_pad(d: dict, crop_size, offset) -> dict:
    """`d` padded at the bottom and right to at least `crop_size`, then cropped there.

    Args:
      d: an example dict.
      crop_size: int or (crop_h, crop_w).
      offset: int [2] (top, left) of the crop in the padded image; must fit.
    """
    ch, cw = _crop_size(crop_size)
    h, w = _image_size(d)
    pad_h = tf.maximum(ch - h, 0)
    pad_w = tf.maximum(cw - w, 0)
    offset = tf.cast(offset, tf.int32)
    top, left = offset[0], offset[1]

    def pad_crop(x, value):
        rank = x.shape.rank
        paddings = [[0, pad_h], [0, pad_w]] + [[0, 0]] * (rank - 2)
        x = tf.pad(x, paddings, constant_values=tf.cast(value, x.dtype))
        begin = tf.stack([top, left] + [0] * (rank - 2))
        size = [ch, cw] + x.shape[2:].as_list()
        return tf.ensure_shape(tf.slice(x, begin, size), size)

    out = dict(d)
    image = tf.cast(d["image"], tf.float32)
    # Pad with zero, then add the mean where padded: original pixels stay bit-exact.
    inside = pad_crop(tf.ones_like(image[..., :1]), 0.0)
    out["image"] = pad_crop(image, 0.0) + (1.0 - inside) * tf.constant(MEAN_RGB)
    for key, x in _maps(d):
        value = schema.IGNORE_LABEL if key in LABEL_KEYS else 0
        out[key] = pad_crop(x, value)
    if "boxes" in d:
        # Pixel coordinates of the padded image are those of the image (bottom/right
        # padding), so move by the offset and normalize by the crop size.
        hw = tf.cast(tf.stack([h, w, h, w]), tf.float32)
        origin = tf.cast(tf.stack([top, left, top, left]), tf.float32)
        crop = tf.constant([ch, cw, ch, cw], tf.float32)
        boxes = tf.reshape(tf.cast(d["boxes"], tf.float32), [-1, 4])
        out["boxes"] = tf.clip_by_value((boxes * hw - origin) / crop, 0.0, 1.0)
    if "height" in d:
        out["height"] = tf.constant(ch, tf.convert_to_tensor(d["height"]).dtype)
    if "width" in d:
        out["width"] = tf.constant(cw, tf.convert_to_tensor(d["width"]).dtype)
    return out


def random_crop_or_pad(d: dict, crop_size, seed) -> dict:
    """`crop_or_pad` at a uniformly random offset chosen by the stateless `seed`.

    Output shapes are static: image [ch, cw, 3] float32, labels [ch, cw], human region
    [ch, cw, 1].
    """
    ch, cw = _crop_size(crop_size)
    h, w = _image_size(d)
    seed_y, seed_x = tf.unstack(tf.random.experimental.stateless_split(_as_seed(seed), 2))
    top = tf.random.stateless_uniform([], seed_y, minval=0,
                                      maxval=tf.maximum(h, ch) - ch + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seed_x, minval=0,
                                       maxval=tf.maximum(w, cw) - cw + 1, dtype=tf.int32)
    return crop_or_pad(d, (ch, cw), tf.stack([top, left]))
