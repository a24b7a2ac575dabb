"""Parsing and decoding of one coseg_tf example (no augmentation, no label merging).

`decode_example` turns a serialized `tf.train.Example` of the format in
`pipelines/schema.py` into a dict of tensors:

  image        uint8   [H, W, 3]  RGB
  id           string  []
  height       int32   []
  width        int32   []
  boxes        float32 [N, 4]     normalized (ymin, xmin, ymax, xmax), one row per person
  person_mask  uint8   [H, W]     0 = no person, k = k-th person
  parts_fine   uint8   [H, W]     0 = no part, i = schema.PART_NAMES[i - 1]

A record of another schema fails inside the pipeline with an error naming every missing
key. `check_schema` makes the same check eagerly on the first record of the first file,
so that entry points can refuse a wrong file before building anything.
"""

from __future__ import annotations

import tensorflow as tf

from pipelines import schema

# The `tf.train.Feature` kind each key must hold.
_KINDS = {
    schema.KEY_IMAGE: "bytes_list",
    schema.KEY_ID: "bytes_list",
    schema.KEY_HEIGHT: "int64_list",
    schema.KEY_WIDTH: "int64_list",
    schema.KEY_BOXES: "float_list",
    schema.KEY_PERSON_MASK: "bytes_list",
    schema.KEY_PARTS_FINE: "bytes_list",
}

_FEATURES = {
    schema.KEY_IMAGE: tf.io.FixedLenFeature([], tf.string),
    schema.KEY_ID: tf.io.FixedLenFeature([], tf.string),
    schema.KEY_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    schema.KEY_WIDTH: tf.io.FixedLenFeature([], tf.int64),
    # Present in every example, possibly empty (an image without persons).
    schema.KEY_BOXES: tf.io.VarLenFeature(tf.float32),
    schema.KEY_PERSON_MASK: tf.io.FixedLenFeature([], tf.string),
    schema.KEY_PARTS_FINE: tf.io.FixedLenFeature([], tf.string),
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


def _assert_has_keys(serialized: tf.Tensor) -> tf.Operation:
    """An assertion that fails naming every schema key the example lacks."""
    keys = _example_keys(serialized)
    wanted = tf.constant(schema.FEATURE_KEYS)
    # [len(FEATURE_KEYS)] True where the wanted key is among the example's keys.
    present = tf.reduce_any(tf.equal(wanted[:, None], keys[None, :]), axis=1)
    missing = tf.strings.reduce_join(tf.boolean_mask(wanted, ~present), separator=", ")
    return tf.debugging.Assert(
        tf.reduce_all(present),
        ["not a coseg_tf example (pipelines/schema.py): missing feature keys:", missing])


def decode_example(serialized) -> dict:
    """Parses and decodes one serialized example; see the module docstring for the dict.

    Args:
      serialized: string scalar, a serialized `tf.train.Example`.

    Raises (when the op runs): InvalidArgumentError naming the missing feature keys, or
    saying which decoded map does not have the image's size.
    """
    serialized = tf.convert_to_tensor(serialized, tf.string)
    with tf.control_dependencies([_assert_has_keys(serialized)]):
        parsed = tf.io.parse_single_example(serialized, _FEATURES)

    # INTEGER_ACCURATE: the same IDCT as libjpeg's default (PIL), not the fast one.
    image = tf.io.decode_jpeg(parsed[schema.KEY_IMAGE], channels=3,
                              dct_method="INTEGER_ACCURATE")
    person_mask = tf.io.decode_png(parsed[schema.KEY_PERSON_MASK], channels=1)[..., 0]
    parts_fine = tf.io.decode_png(parsed[schema.KEY_PARTS_FINE], channels=1)[..., 0]
    height = tf.cast(parsed[schema.KEY_HEIGHT], tf.int32)
    width = tf.cast(parsed[schema.KEY_WIDTH], tf.int32)
    image_id = parsed[schema.KEY_ID]

    size = tf.stack([height, width])
    checks = [
        tf.debugging.Assert(
            tf.reduce_all(tf.equal(tf.shape(x)[:2], size)),
            ["example", image_id, f": {name} has size", tf.shape(x)[:2],
             "but image/height, image/width say", size])
        for name, x in (("image", image), ("person/mask", person_mask),
                        ("parts/fine", parts_fine))
    ]
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


def check_schema(file_pattern: str) -> str:
    """Reads the first record of the first file eagerly and checks its feature keys.

    Args:
      file_pattern: a glob, or comma-separated globs, of TFRecord files.

    Returns:
      The path of the file checked.

    Raises:
      ValueError naming the file and the missing (or mistyped) keys, naming the file
      when it holds no record or cannot be read, or naming the pattern when it matches
      no file.
    """
    from tensorflow.core.example import example_pb2

    from pipelines import streams  # streams imports this module: import at call time

    path = streams.list_files(file_pattern)[0]
    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except (tf.errors.OpError, OSError) as e:
        raise ValueError(f"{path}: cannot read it as a TFRecord file: {e}") from None
    if first is None:
        raise ValueError(f"{path}: the file holds no record")
    try:
        example = example_pb2.Example.FromString(first.numpy())
    except Exception as e:  # protobuf's DecodeError
        raise ValueError(f"{path}: the first record is not a tf.train.Example ({e})") from None
    feature = example.features.feature
    missing = [k for k in schema.FEATURE_KEYS if k not in feature]
    if missing:
        raise ValueError(
            f"{path}: not a coseg_tf example (pipelines/schema.py): missing feature keys "
            f"{missing}; the record has {sorted(feature)}")
    mistyped = [f"{k} holds {feature[k].WhichOneof('kind')}, expected {kind}"
                for k, kind in _KINDS.items() if feature[k].WhichOneof("kind") != kind]
    if mistyped:
        raise ValueError(f"{path}: wrong feature types: {'; '.join(mistyped)}")
    return path
