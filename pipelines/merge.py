"""Training targets from a decoded example: merged part classes and the human region.

Fine parts become training classes through the lookup table of a merge scheme
(`scheme.lookup_table()`, one `tf.gather`), so one TFRecord conversion serves every
scheme (DESIGN.md §1): the built-ins of `schema.SCHEMES` over Pascal-Part names, or a
JSON scheme over any vocabulary, bound to the data's vocabulary (`schema.Scheme.bind`)
so that the table has one row per value of the data's part maps. For schemes with an
"other human region" class, person pixels (instance mask > 0) that no selected part covers get
`scheme.other_id`; without it (person_part6) they stay background, as in the published
Pascal-Person-Part maps, which are exactly `lookup_table[parts_fine]`.

The human region `y` of the model is the union of the person boxes (the paper's setting)
or the union of the instance masks.
"""

from __future__ import annotations

import tensorflow as tf

from pipelines import schema

HUMAN_REGION_MODES = ("boxes", "instance")


def as_scheme(scheme) -> schema.Scheme:
    """A `schema.Scheme`, from itself, a built-in's name or a JSON scheme file
    (`schema.load_scheme`; ValueError naming the choices or the file)."""
    if isinstance(scheme, schema.Scheme):
        return scheme
    if isinstance(scheme, str):
        return schema.load_scheme(scheme)
    raise TypeError(f"scheme must be a schema.Scheme or a scheme name, got {scheme!r}")


def check_human_region_mode(mode: str) -> str:
    """`mode`, or a ValueError naming `human_region_mode` and its choices."""
    if mode not in HUMAN_REGION_MODES:
        raise ValueError(f"human_region_mode must be one of {HUMAN_REGION_MODES}, "
                         f"got {mode!r}")
    return mode


def merge_parts(parts_fine, person_mask, scheme) -> tf.Tensor:
    """int32 [H, W] class map of a fine part map under a merge scheme.

    Args:
      parts_fine: uint8 [H, W], 0 = no part, i = the i-th name of the scheme's
        vocabulary.
      person_mask: uint8 [H, W], 0 = no person, k = k-th person.
      scheme: a `schema.Scheme` bound to the data's vocabulary, or a built-in's name.

    A fine id outside the vocabulary fails in `tf.gather` (on CPU, where tf.data runs).
    """
    scheme = as_scheme(scheme)
    table = tf.constant(scheme.lookup_table(), tf.int32)  # [vocabulary values]
    # [H, W] class of each pixel's fine part; 0 where no selected part covers it.
    labels = tf.gather(table, tf.cast(parts_fine, tf.int32))
    if scheme.other_region:
        other = tf.logical_and(tf.convert_to_tensor(person_mask) > 0, tf.equal(labels, 0))
        labels = tf.where(other, tf.constant(scheme.other_id, tf.int32), labels)
    return labels


def human_region(boxes, person_mask, height, width, mode: str = "boxes") -> tf.Tensor:
    """float32 [H, W, 1] in {0, 1}: the human region `y` of an image.

    Args:
      boxes: float32 [N, 4] normalized (ymin, xmin, ymax, xmax); N may be 0.
      person_mask: uint8 [H, W] instance mask (read in mode 'instance' only).
      height, width: the image size H, W (int scalars).
      mode: 'boxes' (union of the boxes, the paper's setting) or 'instance' (union of
        the instance masks, person_mask > 0).

    Box convention: pixel (r, c) is inside a box when its centre is, half-open:
      ymin * H <= r + 0.5 < ymax * H  and  xmin * W <= c + 0.5 < xmax * W.
    So a box given by pixel edges (ymin = r0 / H, ymax = (r1 + 1) / H) covers exactly
    rows r0..r1, and an empty or degenerate box covers nothing.
    """
    check_human_region_mode(mode)
    if mode == "instance":
        region = tf.cast(tf.convert_to_tensor(person_mask) > 0, tf.float32)
        return region[..., None]

    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    rows = tf.range(tf.cast(height, tf.int32), dtype=tf.float32) + 0.5  # [H]
    cols = tf.range(tf.cast(width, tf.int32), dtype=tf.float32) + 0.5   # [W]
    # [N, H] / [N, W]: 1 where the row / column centre is inside box n.
    in_rows = tf.cast((rows[None, :] >= boxes[:, 0:1] * h)
                      & (rows[None, :] < boxes[:, 2:3] * h), tf.float32)
    in_cols = tf.cast((cols[None, :] >= boxes[:, 1:2] * w)
                      & (cols[None, :] < boxes[:, 3:4] * w), tf.float32)
    # [H, W] number of boxes covering each pixel (an outer product summed over boxes).
    count = tf.matmul(in_rows, in_cols, transpose_a=True)
    return tf.cast(count > 0, tf.float32)[..., None]


def add_training_targets(example: dict, *, scheme, human_region_mode: str = "boxes") -> dict:
    """The example with "labels" (int32 [H, W]) and "human_region" (float32 [H, W, 1]).

    Args:
      example: a dict of `decode.decode_example` (needs parts_fine, person_mask, boxes,
        height, width); other keys are kept.
      scheme: a `schema.Scheme` or its name.
      human_region_mode: 'boxes' or 'instance'.
    """
    out = dict(example)
    out["labels"] = merge_parts(example["parts_fine"], example["person_mask"], scheme)
    out["human_region"] = human_region(example["boxes"], example["person_mask"],
                                       example["height"], example["width"],
                                       mode=human_region_mode)
    return out
