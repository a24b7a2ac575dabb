"""Building and parsing the bytes of one coseg_tf example, without TensorFlow.

`make_example` is the single writer of the format described in `pipelines/schema.py`;
the converter and the tests both call it. It returns the serialized
`tf.train.Example` built with TensorFlow's protobuf classes, imported lazily so that
worker processes that only decode JPEGs and `.mat` files stay light.
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
                 boxes: np.ndarray, person_mask: np.ndarray, parts_fine: np.ndarray) -> bytes:
    """Serialized `tf.train.Example` with exactly the keys of `schema.FEATURE_KEYS`.

    Args:
      jpeg: the original JPEG bytes of the image.
      image_id: the image id.
      height, width: the image size.
      boxes: float (N, 4) normalized (ymin, xmin, ymax, xmax), one row per person.
      person_mask: uint8 (height, width), 0 = no person, k = k-th person.
      parts_fine: uint8 (height, width), 0 = no part, i = schema.PART_NAMES[i - 1].
    """
    from tensorflow.core.example import example_pb2, feature_pb2  # lazy: heavy import

    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    for name, arr in (("person_mask", person_mask), ("parts_fine", parts_fine)):
        if np.shape(arr) != (height, width):
            raise ValueError(f"{name} is {np.shape(arr)}, image is {(height, width)}")

    def _bytes(v):
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[v]))

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
        schema.KEY_PERSON_MASK: _bytes(encode_png(np.asarray(person_mask, np.uint8))),
        schema.KEY_PARTS_FINE: _bytes(encode_png(np.asarray(parts_fine, np.uint8))),
    }
    example = example_pb2.Example(features=feature_pb2.Features(feature=feature))
    # deterministic=True: the same input gives the same bytes (map order is fixed).
    return example.SerializeToString(deterministic=True)


def parse_example(serialized: bytes) -> dict:
    """NumPy view of a serialized example (for tools and tests; tf.data uses decode.py)."""
    from tensorflow.core.example import example_pb2

    ex = example_pb2.Example.FromString(serialized)
    f = ex.features.feature
    missing = [k for k in schema.FEATURE_KEYS if k not in f]
    if missing:
        raise ValueError(f"example lacks keys {missing}: not a coseg_tf example")
    return {
        "jpeg": f[schema.KEY_IMAGE].bytes_list.value[0],
        "id": f[schema.KEY_ID].bytes_list.value[0].decode("utf-8"),
        "height": f[schema.KEY_HEIGHT].int64_list.value[0],
        "width": f[schema.KEY_WIDTH].int64_list.value[0],
        "boxes": np.asarray(f[schema.KEY_BOXES].float_list.value, np.float32).reshape(-1, 4),
        "person_mask": decode_png(f[schema.KEY_PERSON_MASK].bytes_list.value[0]),
        "parts_fine": decode_png(f[schema.KEY_PARTS_FINE].bytes_list.value[0]),
    }
