"""Test helpers for the pipeline tests: tiny synthetic examples, TFRecords, fixtures.

Everything here is built from NumPy arrays and `pipelines.records.make_example`, so the
pipeline tests depend on no conversion tool.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import scipy.io
import tensorflow as tf
from PIL import Image

from pipelines import records, schema


def jpeg_bytes(image: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8), mode="RGB").save(buf, format="JPEG",
                                                                 quality=quality)
    return buf.getvalue()


def pil_decode(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as im:
        return np.asarray(im.convert("RGB"))


def synthetic_arrays(image_id: str, height: int = 20, width: int = 28, seed: int = 0,
                     num_persons: int = 2) -> dict:
    """NumPy arrays of a small synthetic example with `num_persons` rectangle persons.

    Each person is a rectangle of the instance mask painted with random fine parts,
    leaving some of its pixels uncovered ("other human region"); its box is the tight
    box of its mask, by pixel edges.
    """
    rng = np.random.RandomState(seed)
    image = rng.randint(0, 256, size=(height, width, 3)).astype(np.uint8)
    person_mask = np.zeros((height, width), np.uint8)
    parts_fine = np.zeros((height, width), np.uint8)
    boxes = []
    for k in range(1, num_persons + 1):
        h = rng.randint(height // 3, height // 2 + 1)
        w = rng.randint(width // 4, width // 2 + 1)
        r0 = rng.randint(0, height - h + 1)
        c0 = rng.randint(0, width - w + 1)
        person_mask[r0:r0 + h, c0:c0 + w] = k
        # Parts: a random fine id per 2x2 cell, 0 (uncovered) for about one cell in 4.
        cells = rng.randint(1, schema.NUM_FINE, size=((h + 1) // 2, (w + 1) // 2))
        cells[rng.rand(*cells.shape) < 0.25] = 0
        block = np.kron(cells, np.ones((2, 2), np.int64))[:h, :w].astype(np.uint8)
        parts_fine[r0:r0 + h, c0:c0 + w] = block
        boxes.append([r0 / height, c0 / width, (r0 + h) / height, (c0 + w) / width])
    return {"image": image, "id": image_id, "height": height, "width": width,
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "person_mask": person_mask, "parts_fine": parts_fine}


def serialize(arrays: dict, quality: int = 95) -> bytes:
    """`records.make_example` of the arrays of `synthetic_arrays` (JPEG via PIL)."""
    return records.make_example(
        jpeg=jpeg_bytes(arrays["image"], quality), image_id=arrays["id"],
        height=arrays["height"], width=arrays["width"], boxes=arrays["boxes"],
        person_mask=arrays["person_mask"], parts_fine=arrays["parts_fine"])


def write_tfrecord(path, serialized_examples) -> str:
    path = str(path)
    with tf.io.TFRecordWriter(path) as writer:
        for s in serialized_examples:
            writer.write(s)
    return path


def write_split(directory, split: str, arrays_list: list, num_shards: int = 2,
                manifest=None) -> list:
    """Shards `DIR/SPLIT-0000i-of-0000n.tfrecord` (round robin) and optionally a manifest.

    Returns the shard paths. `manifest` is written as `DIR/SPLIT.manifest.json`: a list
    of ids gives {"ids": that list}; a dict {shard file name: ids} gives the layout of
    tools/make_tfrecords.py ("shards" with counts, "examples" in shard order).
    """
    paths, names = [], []
    for i in range(num_shards):
        name = f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord"
        path = os.path.join(str(directory), name)
        write_tfrecord(path, [serialize(a) for a in arrays_list[i::num_shards]])
        paths.append(path)
        names.append(name)
    if isinstance(manifest, dict):
        content = {"shards": [{"file": n, "examples": len(manifest[n])} for n in names],
                   "examples": [{"id": i, "persons": 1} for n in names for i in manifest[n]]}
    elif manifest is not None:
        content = {"ids": list(manifest)}
    if manifest is not None:
        with open(os.path.join(str(directory), f"{split}.manifest.json"), "w") as f:
            json.dump(content, f)
    return paths


def ids_in_file_order(arrays_list: list, num_shards: int) -> list:
    """The ids `write_split` puts in its shards, in file order."""
    return [a["id"] for i in range(num_shards) for a in arrays_list[i::num_shards]]


# === Real Pascal-Part annotations ===

def load_pascal_part(mat_path) -> dict:
    """Persons of a Pascal-Part .mat: instance mask, and their parts in file order.

    Returns {"height", "width", "person_mask" uint8 (k = k-th person),
    "parts": [(part name, bool mask), ...] in file order, persons in file order}.
    """
    anno = scipy.io.loadmat(str(mat_path))["anno"][0, 0]
    objects = anno["objects"][0]
    height, width = objects[0]["mask"].shape
    person_mask = np.zeros((height, width), np.uint8)
    parts = []
    k = 0
    for obj in objects:
        if str(obj["class"][0]) != schema.PERSON_CLASS:
            continue
        k += 1
        person_mask[obj["mask"] > 0] = k
        if obj["parts"].size:
            for part in obj["parts"][0]:
                parts.append((str(part["part_name"][0]), part["mask"] > 0))
    return {"height": height, "width": width, "person_mask": person_mask, "parts": parts}


def paint_fine(parts: list, height: int, width: int) -> np.ndarray:
    """uint8 fine part map: parts painted in file order, a later one over an earlier."""
    fine = np.zeros((height, width), np.uint8)
    for name, mask in parts:
        fine[mask] = schema.PART_ID[name]
    return fine


def tight_boxes(person_mask: np.ndarray) -> np.ndarray:
    """float32 [N, 4] normalized tight boxes (pixel edges) of each instance k = 1..N."""
    height, width = person_mask.shape
    boxes = []
    for k in range(1, int(person_mask.max()) + 1):
        rows, cols = np.nonzero(person_mask == k)
        boxes.append([rows.min() / height, cols.min() / width,
                      (rows.max() + 1) / height, (cols.max() + 1) / width])
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def class_map_by_names(parts: list, person_mask: np.ndarray, scheme) -> np.ndarray:
    """Expected int32 class map computed from part NAMES and the scheme's groups.

    Independent of the fine ids and of the lookup table: each part is painted in file
    order with the class whose group names it (0 when no group does), then person
    pixels left at 0 get the "other" class when the scheme has one.
    """
    class_of = {}
    for class_id, (_, names) in enumerate(scheme.groups, start=1):
        for name in names:
            class_of[name] = class_id
    out = np.zeros(person_mask.shape, np.int32)
    for name, mask in parts:
        out[mask] = class_of.get(name, 0)
    if scheme.other_region:
        out[(person_mask > 0) & (out == 0)] = len(scheme.groups) + 1
    return out


def luma(image) -> np.ndarray:
    """float64 [H, W] ITU-R 601 luma of an RGB image."""
    return np.asarray(image, np.float64) @ np.array([0.299, 0.587, 0.114])


def best_shift(a, b, reach=3):
    """The (dy, dx) in [-reach, reach]^2 at which map `b` best matches map `a`
    (normalised correlation of the centred maps over a's interior): (0, 0) when no
    pixel of b moved."""
    h, w = a.shape
    r = reach
    core = a[r:h - r, r:w - r] - a[r:h - r, r:w - r].mean()
    best, arg = -np.inf, None
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            part = b[r + dy:h - r + dy, r + dx:w - r + dx]
            part = part - part.mean()
            score = (core * part).sum() / (np.linalg.norm(core) * np.linalg.norm(part)
                                           + 1e-9)
            if score > best:
                best, arg = score, (dy, dx)
    return arg
