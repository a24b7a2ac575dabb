"""Building and parsing the bytes of one coseg_tf example, without TensorFlow.

`make_example` is the single writer of the format described in `pipelines/schema.py`;
the converter and the tests both call it. It returns the serialized
`tf.train.Example` built with TensorFlow's protobuf classes, imported lazily so that
worker processes that only decode JPEGs, PNGs and `.mat` files stay light.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pipelines import schema


def encode_png(array: np.ndarray) -> bytes:
    """Lossless PNG bytes of a 2-D uint8 array."""
    array = np.asarray(array)
    if array.ndim != 2 or array.dtype != np.uint8:
        raise ValueError(f"encode_png wants a 2-D uint8 array, got {array.dtype} {array.shape}")
    buf = io.BytesIO()
    Image.fromarray(array, mode="L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """The 2-D uint8 array of PNG bytes written by `encode_png`."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im, dtype=np.uint8)


def make_example(*, jpeg: bytes, image_id: str, height: int, width: int,
                 boxes: np.ndarray, person_mask: np.ndarray | None = None,
                 parts_fine: np.ndarray | None = None,
                 vocabulary: schema.Vocabulary = schema.PASCAL_PART) -> bytes:
    """Serialized `tf.train.Example` of the format of `pipelines/schema.py`.

    A record that carries parts (person_mask and parts_fine given) has the keys of
    `schema.FEATURE_KEYS`, annotation/kind b"parts"; a box-only record (both None) those
    of `schema.BOXES_FEATURE_KEYS`, annotation/kind b"boxes": no part map, no instance
    mask, no vocabulary.

    Args:
      jpeg: the JPEG bytes of the (upright) image.
      image_id: the image id.
      height, width: the image size.
      boxes: float (N, 4) normalized (ymin, xmin, ymax, xmax), one row per person.
      person_mask: uint8 (height, width), 0 = no person, k = k-th person; or None.
      parts_fine: uint8 (height, width), 0 = no part, i = vocabulary.part_names[i - 1];
        or None.
      vocabulary: the `schema.Vocabulary` of parts_fine (Pascal-Part by default).

    Raises:
      ValueError: one of person_mask / parts_fine without the other, or a map of
        another size than the image. (Values of parts_fine are the caller's to check:
        the decoder refuses one outside the vocabulary, naming the record.)
    """
    from tensorflow.core.example import example_pb2, feature_pb2  # lazy: heavy import

    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if (person_mask is None) != (parts_fine is None):
        raise ValueError("make_example: give both person_mask and parts_fine (a record "
                         "with parts) or neither (a box-only record)")
    has_parts = parts_fine is not None
    if has_parts:
        for name, arr in (("person_mask", person_mask), ("parts_fine", parts_fine)):
            if np.shape(arr) != (height, width):
                raise ValueError(f"{name} is {np.shape(arr)}, image is {(height, width)}")

    def _bytes(*values):
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=list(values)))

    def _int(v):
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[int(v)]))

    def _floats(v):
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=list(map(float, v))))

    feature = {
        schema.KEY_IMAGE: _bytes(jpeg),
        schema.KEY_ID: _bytes(image_id.encode("utf-8")),
        schema.KEY_HEIGHT: _int(height),
        schema.KEY_WIDTH: _int(width),
        schema.KEY_BOXES: _floats(boxes.reshape(-1)),
        schema.KEY_ANNOTATION: _bytes((schema.ANNOTATION_PARTS if has_parts
                                       else schema.ANNOTATION_BOXES).encode()),
    }
    if has_parts:
        feature.update({
            schema.KEY_PERSON_MASK: _bytes(encode_png(np.asarray(person_mask, np.uint8))),
            schema.KEY_PARTS_FINE: _bytes(encode_png(np.asarray(parts_fine, np.uint8))),
            schema.KEY_VOCABULARY: _bytes(*(n.encode("utf-8") for n in vocabulary.part_names)),
        })
    example = example_pb2.Example(features=feature_pb2.Features(feature=feature))
    # deterministic=True: the same input gives the same bytes (map order is fixed).
    return example.SerializeToString(deterministic=True)


def annotation_of(feature) -> str:
    """"parts" or "boxes": what a record's feature map (a protobuf map) says it carries.

    A record of schema version 1 has no annotation/kind: it carries parts.

    Raises ValueError for another value.
    """
    if schema.KEY_ANNOTATION not in feature:
        return schema.ANNOTATION_PARTS
    values = feature[schema.KEY_ANNOTATION].bytes_list.value
    kind = values[0].decode("utf-8", "replace") if len(values) == 1 else repr(list(values))
    if kind not in schema.ANNOTATIONS:
        raise ValueError(f"{schema.KEY_ANNOTATION} is {kind!r}, not one of "
                         f"{', '.join(schema.ANNOTATIONS)}")
    return kind


def vocabulary_of(feature) -> schema.Vocabulary | None:
    """The `schema.Vocabulary` a record's feature map names; None for a box-only record.

    A record of schema version 1 has no parts/vocabulary: the Pascal-Part vocabulary.
    """
    if annotation_of(feature) == schema.ANNOTATION_BOXES:
        return None
    if schema.KEY_VOCABULARY not in feature:
        return schema.PASCAL_PART
    names = [n.decode("utf-8") for n in feature[schema.KEY_VOCABULARY].bytes_list.value]
    if names == list(schema.PART_NAMES):
        return schema.PASCAL_PART
    return schema.Vocabulary(names, name="record vocabulary")


def parse_example(serialized: bytes) -> dict:
    """NumPy view of a serialized example (for tools and tests; tf.data uses decode.py).

    "person_mask" and "parts_fine" are None and "vocabulary" is None for a box-only
    record ("annotation" == "boxes").
    """
    from tensorflow.core.example import example_pb2

    ex = example_pb2.Example.FromString(serialized)
    f = ex.features.feature
    annotation = annotation_of(f)
    wanted = schema.REQUIRED_KEYS + (schema.PART_KEYS
                                     if annotation == schema.ANNOTATION_PARTS else ())
    missing = [k for k in wanted if k not in f]
    if missing:
        raise ValueError(f"example lacks keys {missing}: not a coseg_tf example")
    has_parts = annotation == schema.ANNOTATION_PARTS
    return {
        "jpeg": f[schema.KEY_IMAGE].bytes_list.value[0],
        "id": f[schema.KEY_ID].bytes_list.value[0].decode("utf-8"),
        "height": f[schema.KEY_HEIGHT].int64_list.value[0],
        "width": f[schema.KEY_WIDTH].int64_list.value[0],
        "boxes": np.asarray(f[schema.KEY_BOXES].float_list.value, np.float32).reshape(-1, 4),
        "annotation": annotation,
        "person_mask": (decode_png(f[schema.KEY_PERSON_MASK].bytes_list.value[0])
                        if has_parts else None),
        "parts_fine": (decode_png(f[schema.KEY_PARTS_FINE].bytes_list.value[0])
                       if has_parts else None),
        "vocabulary": vocabulary_of(f),
    }
