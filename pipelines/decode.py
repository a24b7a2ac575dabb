"""Parsing and decoding of one coseg_tf example (no augmentation, no label merging).

`decode_example` turns a serialized `tf.train.Example` of the format in
`pipelines/schema.py` into a dict of tensors:

  image        uint8   [H, W, 3]  RGB
  id           string  []
  height       int32   []
  width        int32   []
  boxes        float32 [N, 4]     normalized (ymin, xmin, ymax, xmax), one row per person
  person_mask  uint8   [H, W]     0 = no person, k = k-th person
  parts_fine   uint8   [H, W]     0 = no part, i = the record's vocabulary's i-th name

A box-only record (annotation/kind b"boxes": the unlabeled pool) has no instance mask
and no part map: both come out all zero, so that one dataset can hold both kinds; only
the unlabeled stream reads such records, and it drops both maps (DESIGN.md §1). A
stream that needs parts decodes with `require_parts=True`, which refuses a box-only
record naming it.

A record of another schema fails inside the pipeline with an error naming every missing
key. `pipelines.dataset_files.check_files` makes the same check eagerly on the first
record of every file, so that entry points can refuse a wrong file before building
anything. A record whose content the pipeline cannot use (image bytes that are not a
JPEG, maps of another size than the image, a part id outside the record's vocabulary,
no parts where parts are required) fails where it is decoded, naming its image id
(`bad_record_in`); train.py and eval.py turn that into a refusal naming the record and
its file (`streams.locate_bad_record`), exit code 2.
"""

from __future__ import annotations

import base64
import re

import tensorflow as tf

from pipelines import schema

_FEATURES = {
    schema.KEY_IMAGE: tf.io.FixedLenFeature([], tf.string),
    schema.KEY_ID: tf.io.FixedLenFeature([], tf.string),
    schema.KEY_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    schema.KEY_WIDTH: tf.io.FixedLenFeature([], tf.int64),
    # Present in every example, possibly empty (an image without persons).
    schema.KEY_BOXES: tf.io.VarLenFeature(tf.float32),
    # Absent from a box-only record (and annotation/kind, parts/vocabulary from a
    # record of schema version 1: it carries parts of the Pascal-Part vocabulary).
    schema.KEY_ANNOTATION: tf.io.FixedLenFeature([], tf.string,
                                                 default_value=schema.ANNOTATION_PARTS),
    schema.KEY_PERSON_MASK: tf.io.FixedLenFeature([], tf.string, default_value=""),
    schema.KEY_PARTS_FINE: tf.io.FixedLenFeature([], tf.string, default_value=""),
    schema.KEY_VOCABULARY: tf.io.VarLenFeature(tf.string),
}


def _example_keys(serialized: tf.Tensor) -> tf.Tensor:
    """string [K]: the feature keys present in one serialized tf.train.Example.

    `tf.io.parse_single_example` cannot tell a missing `human/boxes` from an empty one,
    and names only the first missing key; reading the map keys of the proto can.
    """
    _, (features,) = tf.io.decode_proto(
        tf.reshape(serialized, [1]), "tensorflow.Example", ["features"], [tf.string])
    _, (entries,) = tf.io.decode_proto(
        tf.reshape(features, [-1])[:1], "tensorflow.Features", ["feature"], [tf.string])
    _, (keys,) = tf.io.decode_proto(
        tf.reshape(entries, [-1]), "tensorflow.Features.FeatureEntry", ["key"], [tf.string])
    return tf.reshape(keys, [-1])


def _assert_has_keys(serialized: tf.Tensor, annotation: tf.Tensor) -> tf.Operation:
    """An assertion that fails naming every schema key the example lacks.

    Every record needs `schema.REQUIRED_KEYS`; one that carries parts (annotation/kind
    b"parts", or absent) also `schema.PART_KEYS`.
    """
    keys = _example_keys(serialized)

    def missing_of(wanted_keys):
        wanted = tf.constant(wanted_keys)
        # [len(wanted)] True where the wanted key is among the example's keys.
        present = tf.reduce_any(tf.equal(wanted[:, None], keys[None, :]), axis=1)
        return tf.boolean_mask(wanted, ~present)

    has_parts = tf.not_equal(annotation, schema.ANNOTATION_BOXES)
    missing = tf.concat([
        missing_of(schema.REQUIRED_KEYS),
        tf.cond(has_parts, lambda: missing_of(schema.PART_KEYS),
                lambda: tf.zeros([0], tf.string)),
    ], axis=0)
    return tf.debugging.Assert(
        tf.equal(tf.size(missing), 0),
        ["not a coseg_tf example (pipelines/schema.py): missing feature keys:",
         tf.strings.reduce_join(missing, separator=", ")])


# === A record the pipeline cannot use ===
# Checks of a record's content fail with "coseg_tf: bad record: <problem> [image id:
# <id> | <id in URL-safe base64>]": TensorFlow escapes the message differently in eager
# and graph mode, the base64 copy reads back the same in both (`bad_record_in`), so
# that the entry points can name the record and its file (streams.locate_record).
BAD_RECORD = "coseg_tf: bad record: "
_BAD_RECORD_RE = re.compile(re.escape(BAD_RECORD)
                            + r"(?P<problem>[^\[]*) \[image id: .*? \| (?P<id64>[A-Za-z0-9_=-]*)\]")


def _as_text(x) -> tf.Tensor:
    return tf.strings.reduce_join(tf.strings.as_string(tf.reshape(x, [-1])), separator="x")


def _record_check(condition, image_id, *problem) -> tf.Operation:
    """An assertion naming the record's id and the problem (strings or string tensors)."""
    message = tf.strings.join([BAD_RECORD, *problem, " [image id: ", image_id, " | ",
                               tf.io.encode_base64(image_id), "]"])
    return tf.debugging.Assert(condition, [message])


def bad_record_in(error) -> tuple | None:
    """(image id, problem) of an error raised by a record check of `decode_example`;
    None for any other error."""
    match = _BAD_RECORD_RE.search(str(getattr(error, "message", error)))
    if match is None:
        return None
    id64 = match["id64"]
    image_id = base64.urlsafe_b64decode(id64 + "=" * (-len(id64) % 4))
    return image_id.decode("utf-8", "replace"), match["problem"]


def decode_jpeg(data) -> tf.Tensor:
    """uint8 [H, W, 3] RGB of JPEG bytes: the one decode of `image/encoded`.

    The converter checks every image with this same function (`check_jpeg`), so what it
    writes is what the pipeline reads. `tf.io.decode_jpeg` ignores EXIF: the bytes must
    hold the upright image. INTEGER_ACCURATE: the same IDCT as libjpeg's default (PIL),
    not the fast one.
    """
    return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")


def check_jpeg(data: bytes) -> tuple:
    """(height, width) of JPEG bytes, decoded eagerly exactly as `decode_example` does.

    Raises:
      ValueError: the bytes are not a JPEG (`schema.JPEG_SOI`, the test of
        `tf.io.is_jpeg`: TensorFlow's decode_jpeg would also decode PNG, GIF and WebP
        bytes, which the format does not allow), or TensorFlow cannot decode them
        (truncated, corrupt, an unsupported JPEG process).
    """
    if not bytes(data[:3]) == schema.JPEG_SOI:
        raise ValueError("not a JPEG (no JPEG start-of-image marker FF D8 FF)")
    try:
        image = decode_jpeg(tf.constant(data, tf.string))
    except tf.errors.OpError as e:
        # "{{function_node __wrapped__DecodeJpeg...}} jpeg::Uncompress failed. ...
        # [Op:DecodeJpeg]": the message without TensorFlow's frame.
        message = re.sub(r"^\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]\s*$", "", e.message.strip())
        raise ValueError(f"TensorFlow cannot decode it (tf.io.decode_jpeg, as the "
                         f"training pipeline reads it: {message})") from None
    return int(image.shape[0]), int(image.shape[1])


def _decode_map(png, has_parts, size) -> tf.Tensor:
    """uint8 [H, W] of a map's PNG bytes; zeros of `size` for a box-only record."""
    return tf.cond(has_parts,
                   lambda: tf.io.decode_png(png, channels=1)[..., 0],
                   lambda: tf.zeros(size, tf.uint8))


def decode_example(serialized, *, require_parts: bool = False) -> dict:
    """Parses and decodes one serialized example; see the module docstring for the dict.

    Args:
      serialized: string scalar, a serialized `tf.train.Example`.
      require_parts: refuse a box-only record (the labeled and evaluation streams).

    Raises (when the op runs): InvalidArgumentError naming the missing feature keys; or,
    naming the record's id (read back by `bad_record_in`), for image bytes that are not
    a JPEG, a decoded map that does not have the image's size, a part id outside the
    record's vocabulary (its parts/vocabulary names; 24 Pascal-Part names when absent),
    an unknown annotation/kind, or, with `require_parts`, a box-only record. (Bytes that
    start like a JPEG but do not decode fail in tf.io.decode_jpeg, without the id:
    `streams.locate_record` finds such a record.)
    """
    serialized = tf.convert_to_tensor(serialized, tf.string)
    # What the record carries decides which keys it must have; every missing key is
    # named before the full parse (which would name only the first).
    annotation = tf.io.parse_single_example(
        serialized, {schema.KEY_ANNOTATION: _FEATURES[schema.KEY_ANNOTATION]}
    )[schema.KEY_ANNOTATION]
    with tf.control_dependencies([_assert_has_keys(serialized, annotation)]):
        parsed = tf.io.parse_single_example(serialized, _FEATURES)
    image_id = parsed[schema.KEY_ID]
    has_parts = tf.equal(annotation, schema.ANNOTATION_PARTS)
    checks = [_record_check(
        tf.logical_or(has_parts, tf.equal(annotation, schema.ANNOTATION_BOXES)), image_id,
        f"{schema.KEY_ANNOTATION} is ", annotation, ", not one of "
        f"{' or '.join(schema.ANNOTATIONS)}")]
    if require_parts:
        checks.append(_record_check(
            has_parts, image_id, "the record carries no part labels (annotation/kind "
            "boxes: a box-only record of the unlabeled pool) but is read as labeled "
            "data"))
    # PNG, GIF and WebP bytes would decode too (tf.io.decode_jpeg takes them): the
    # format, and the converter, take JPEG only.
    jpeg_ok = _record_check(tf.io.is_jpeg(parsed[schema.KEY_IMAGE]), image_id,
                            "image/encoded is not a JPEG (no start-of-image marker "
                            "FF D8 FF)")
    with tf.control_dependencies([jpeg_ok]):
        image = decode_jpeg(parsed[schema.KEY_IMAGE])
    height = tf.cast(parsed[schema.KEY_HEIGHT], tf.int32)
    width = tf.cast(parsed[schema.KEY_WIDTH], tf.int32)
    size = tf.stack([height, width])
    person_mask = _decode_map(parsed[schema.KEY_PERSON_MASK], has_parts, size)
    parts_fine = _decode_map(parsed[schema.KEY_PARTS_FINE], has_parts, size)

    checks += [
        _record_check(tf.reduce_all(tf.equal(tf.shape(x)[:2], size)), image_id,
                      f"{name} has size ", _as_text(tf.shape(x)[:2]),
                      " but image/height, image/width say ", _as_text(size))
        for name, x in (("image", image), ("person/mask", person_mask),
                        ("parts/fine", parts_fine))
    ]
    # Part ids index the merge table: a value outside the vocabulary (255 from another
    # tool, an edited map) must stop here, named, not in a gather deep in the pipeline.
    names = parsed[schema.KEY_VOCABULARY]
    num_names = tf.where(tf.size(names.values) > 0, tf.size(names.values),
                         len(schema.PART_NAMES))
    top = tf.reduce_max(tf.cast(parts_fine, tf.int32))  # an empty map: int32 min, passes
    checks.append(_record_check(
        top <= num_names, image_id, "parts/fine holds the part id ", _as_text(top),
        ", outside the part vocabulary 0..", _as_text(num_names),
        " (the names of its parts/vocabulary, pipelines/schema.py)"))
    boxes = tf.reshape(tf.sparse.to_dense(parsed[schema.KEY_BOXES]), [-1, 4])
    with tf.control_dependencies(checks):
        return {
            "image": tf.identity(image),
            "id": tf.identity(image_id),
            "height": tf.identity(height),
            "width": tf.identity(width),
            "boxes": tf.identity(boxes),
            "person_mask": tf.identity(person_mask),
            "parts_fine": tf.identity(parts_fine),
        }
