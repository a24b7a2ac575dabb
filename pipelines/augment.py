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

Strong views (weak-to-strong consistency: FixMatch and UniMatch as UniMatch, Yang et
al., CVPR 2023, implements them; `coseg_tf.objectives`). The weak view is the example
as the ops above leave it (scale, crop, flip). `strong_view` adds a copy of its image
with photometric changes only (colour jitter, random grayscale, Gaussian blur: every
pixel stays where it is, so the views correspond pixel for pixel) and a CutMix box,
drawn per example. The mixing itself needs a partner from the same batch and the
teacher's pseudo-labels, which exist only in the train step: `cutmix` mixes a batch of
maps (strong images, regions, pseudo-labels, at any resolution) inside the boxes with
one call, so that they all take the same partner in the same box.
"""

from __future__ import annotations

import numpy as np
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


# === Strong view: photometric changes and a CutMix box ===
# UniMatch's strong augmentation (their public code, dataset/semi.py and
# dataset/transform.py): colour jitter (brightness, contrast, saturation 0.5, hue 0.25)
# with probability 0.8, grayscale with probability 0.2, Gaussian blur of a standard
# deviation uniform in [0.1, 2.0] pixels with probability 0.5; a CutMix box with
# probability 0.5, of an area uniform in [0.02, 0.4] of the crop and an aspect ratio
# uniform in [0.3, 1 / 0.3].
JITTER_PROBABILITY = 0.8
JITTER_BRIGHTNESS = 0.5
JITTER_CONTRAST = 0.5
JITTER_SATURATION = 0.5
JITTER_HUE = 0.25
GRAYSCALE_PROBABILITY = 0.2
BLUR_PROBABILITY = 0.5
BLUR_SIGMA = (0.1, 2.0)
CUTMIX_PROBABILITY = 0.5
CUTMIX_AREA = (0.02, 0.4)
CUTMIX_ASPECT = (0.3, 1 / 0.3)
# Taps on each side of the blur kernel: 3 standard deviations of the widest blur.
_BLUR_RADIUS = int(np.ceil(3 * BLUR_SIGMA[1]))
# ITU-R 601 luma, as PIL's and tf.image's grayscale.
_LUMA = (0.299, 0.587, 0.114)


def _grayscale(image):
    """[H, W, 1] luma of a float RGB image."""
    return tf.reduce_sum(image * tf.constant(_LUMA, image.dtype), axis=-1, keepdims=True)


def color_jitter(image, *, brightness, contrast, saturation, hue):
    """The image with its brightness, contrast, saturation and hue changed, in that order.

    The factors are torchvision's `ColorJitter` definitions (UniMatch's strong view):
    brightness multiplies the pixels; contrast blends with the mean luma of the image;
    saturation blends with the pixel's own luma (a factor of 0 gives grayscale); hue
    turns the hue by `hue` of a full turn. torchvision applies the four in a random
    order; here the order is fixed.

    Args:
      image: float32 [H, W, 3] RGB in 0..255.
      brightness, contrast, saturation: factors >= 0 (1 = unchanged).
      hue: a shift in [-0.5, 0.5] of the hue circle (0 = unchanged).

    Returns:
      float32 [H, W, 3] in 0..255.
    """
    image = tf.cast(image, tf.float32)
    image = tf.clip_by_value(image * brightness, 0.0, 255.0)
    mean = tf.reduce_mean(_grayscale(image))
    image = tf.clip_by_value(mean + contrast * (image - mean), 0.0, 255.0)
    gray = _grayscale(image)
    image = tf.clip_by_value(gray + saturation * (image - gray), 0.0, 255.0)
    image = tf.image.adjust_hue(image / 255.0, hue) * 255.0
    return tf.clip_by_value(image, 0.0, 255.0)


def grayscale(image):
    """float32 [H, W, 3]: the luma of every pixel in all three channels."""
    image = tf.cast(image, tf.float32)
    return tf.tile(_grayscale(image), [1, 1, 3])


def gaussian_blur(image, sigma):
    """The image convolved with a Gaussian of standard deviation `sigma` pixels.

    Separable, 2 * 6 + 1 taps each way (3 standard deviations of the widest blur of the
    strong view), the borders reflected (no dark frame); each pixel stays where it is.

    Args:
      image: float32 [H, W, 3].
      sigma: a scalar > 0 (at most BLUR_SIGMA[1] for a kernel 3 deviations wide).
    """
    image = tf.cast(image, tf.float32)
    sigma = tf.cast(sigma, tf.float32)
    taps = tf.range(-_BLUR_RADIUS, _BLUR_RADIUS + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(taps / sigma))
    kernel = kernel / tf.reduce_sum(kernel)
    r = _BLUR_RADIUS
    # SYMMETRIC padding reads at most the whole image again on each side.
    x = tf.pad(image[None], [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
    rows = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, 3, 1])
    cols = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, 3, 1])
    x = tf.nn.depthwise_conv2d(x, rows, [1, 1, 1, 1], "VALID")
    x = tf.nn.depthwise_conv2d(x, cols, [1, 1, 1, 1], "VALID")
    return x[0]


def random_photometric(image, seed):
    """UniMatch's strong photometric changes of `image`, drawn by the stateless `seed`.

    Colour jitter (probability JITTER_PROBABILITY, each factor uniform in 1 +- its
    range, the hue shift in +-JITTER_HUE), then grayscale (GRAYSCALE_PROBABILITY), then
    Gaussian blur (BLUR_PROBABILITY, sigma uniform in BLUR_SIGMA). No pixel moves.

    Args:
      image: float32 [H, W, 3] RGB in 0..255.
      seed: a stateless seed (int, or int [2]).

    Returns:
      float32 [H, W, 3] in 0..255.
    """
    image = tf.cast(image, tf.float32)
    seeds = tf.random.experimental.stateless_split(_as_seed(seed), 6)
    draws = tf.random.stateless_uniform([3], seeds[0])
    factors = tf.random.stateless_uniform([4], seeds[1], minval=-1.0, maxval=1.0)
    sigma = tf.random.stateless_uniform([], seeds[2], minval=BLUR_SIGMA[0],
                                        maxval=BLUR_SIGMA[1])

    def jitter():
        return color_jitter(image, brightness=1.0 + JITTER_BRIGHTNESS * factors[0],
                            contrast=1.0 + JITTER_CONTRAST * factors[1],
                            saturation=1.0 + JITTER_SATURATION * factors[2],
                            hue=JITTER_HUE * factors[3])

    image = tf.cond(draws[0] < JITTER_PROBABILITY, jitter, lambda: image)
    image = tf.cond(draws[1] < GRAYSCALE_PROBABILITY, lambda: grayscale(image),
                    lambda: image)
    image = tf.cond(draws[2] < BLUR_PROBABILITY, lambda: gaussian_blur(image, sigma),
                    lambda: image)
    return tf.ensure_shape(image, [None, None, 3])


def random_cutmix_box(height, width, seed):
    """float32 [height, width]: 1 inside a random CutMix box, 0 elsewhere (or all 0).

    With probability CUTMIX_PROBABILITY a box of area a * height * width (a uniform in
    CUTMIX_AREA) and aspect ratio h / w = r (uniform in CUTMIX_ASPECT), its sides
    truncated to whole pixels and to the map, at a uniformly random position where it
    fits; otherwise no box. (UniMatch redraws the position, and the ratio, until the
    box fits; drawing the position among those that fit gives the same boxes when the
    sides fit.)
    """
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    seeds = tf.random.experimental.stateless_split(_as_seed(seed), 4)
    draw = tf.random.stateless_uniform([], seeds[0])
    area = tf.random.stateless_uniform([], seeds[1], minval=CUTMIX_AREA[0],
                                       maxval=CUTMIX_AREA[1])
    ratio = tf.random.stateless_uniform([], seeds[2], minval=CUTMIX_ASPECT[0],
                                        maxval=CUTMIX_ASPECT[1])
    pixels = area * tf.cast(height * width, tf.float32)
    box_h = tf.clip_by_value(tf.cast(tf.sqrt(pixels * ratio), tf.int32), 1, height)
    box_w = tf.clip_by_value(tf.cast(tf.sqrt(pixels / ratio), tf.int32), 1, width)
    corner = tf.random.stateless_uniform([2], seeds[3])
    top = tf.cast(corner[0] * tf.cast(height - box_h + 1, tf.float32), tf.int32)
    left = tf.cast(corner[1] * tf.cast(width - box_w + 1, tf.float32), tf.int32)
    top = tf.minimum(top, height - box_h)
    left = tf.minimum(left, width - box_w)
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = ((rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w))
    inside = tf.logical_and(inside, draw < CUTMIX_PROBABILITY)
    return tf.cast(inside, tf.float32)


def strong_view(d: dict, seed, *, image_key="strong_image", box_key="cutmix_box") -> dict:
    """`d` with a strong view of its image and a CutMix box added.

    d[image_key] = `random_photometric(d["image"])` (the weak view's geometry: no pixel
    moves, so image, region, labels and the teacher's pseudo-labels of the weak view
    all hold for it), d[box_key] = `random_cutmix_box` of the image's size. Every other
    key is left as it is. Call it after the geometric ops, on the weak view.

    Args:
      d: an example dict with "image" [H, W, 3].
      seed: a stateless seed; one seed gives one view (draw two views with two seeds).
      image_key, box_key: where the strong image and the box go.
    """
    photo_seed, box_seed = tf.unstack(tf.random.experimental.stateless_split(
        _as_seed(seed), 2))
    out = dict(d)
    out[image_key] = random_photometric(d["image"], photo_seed)
    h, w = _image_size(d)
    out[box_key] = random_cutmix_box(h, w, box_seed)
    return out


def cutmix_partner(batch_size):
    """int32 [B]: the partner of each element of a batch in `cutmix`: the next one.

    Element i takes the content of element (i + 1) mod B inside its box: every element
    is pasted into exactly one other (a permutation; with B = 1, into itself, which
    changes nothing). The stream's order is shuffled, so the pairs are random.
    """
    return (tf.range(batch_size, dtype=tf.int32) + 1) % batch_size


def cutmix(maps: dict, box, partner) -> dict:
    """Batched CutMix: inside element i's box, every map takes element partner[i]'s values.

    One call mixes every map it is given with the same boxes and partners, so strong
    images, human regions, pseudo-labels and confidences stay aligned.

    Args:
      maps: {name: [B, H, W] or [B, H, W, C] tensor}, all of the box's H, W.
      box: [B, H, W], > 0.5 inside the box (e.g. `random_cutmix_box`, batched; at
        feature resolution after `coseg_tf.masking.resize_region`).
      partner: int [B], indices into the batch (`cutmix_partner`).

    Returns:
      {name: tensor} of the same shapes and dtypes.
    """
    box = tf.convert_to_tensor(box)
    if box.shape.rank != 3:
        raise ValueError(f"cutmix: box must be [B, H, W], got shape {box.shape}")
    inside = box > 0.5
    out = {}
    for name, x in maps.items():
        x = tf.convert_to_tensor(x)
        if x.shape.rank not in (3, 4):
            raise ValueError(f"cutmix: {name} must be [B, H, W] or [B, H, W, C], got "
                             f"shape {x.shape}")
        for a, b in zip(x.shape[:3], box.shape):
            if a is not None and b is not None and a != b:
                raise ValueError(f"cutmix: {name} has shape {x.shape}, the box "
                                 f"{box.shape}: they must share B, H, W")
        mask = inside if x.shape.rank == 3 else inside[..., None]
        out[name] = tf.where(mask, tf.gather(x, partner), x)
    return out
