"""Reading one Pascal-Part image: its `.mat` annotation, its JPEG and its VOC person boxes.

This is the per-image half of `tools/make_tfrecords.py`, the half its worker processes
run. It is pure Python + NumPy + SciPy + PIL: importing it does not import TensorFlow,
so a worker stays light (serializing a `tf.train.Example` happens in the parent).

A Pascal-Part file (DESIGN.md §1) is a MATLAB v5 struct read with
`scipy.io.loadmat(f)["anno"][0, 0]`: fields `imname` and `objects` (shape (1, N)); each
object has `class` (e.g. "person"), `class_ind`, `mask` (H x W uint8 {0, 1}) and `parts`,
shape (1, K) with fields `part_name` and `mask`, or shape (0, 0) when it has none.

What one image becomes:
- Person objects are the objects whose class is exactly "person" (`schema.PERSON_CLASS`).
  Other objects are ignored, parts included (animals have "head" and "torso" parts too).
- person mask: uint8, 0 = no person, k = the k-th person object in file order; where
  two person masks overlap the later person wins.
- fine part map: uint8, the person objects' parts painted in file order with the ids of
  `schema.PART_ID`, a later part over an earlier one (this order reproduces the
  published Pascal-Person-Part label maps). 0 = no part. A person part name outside
  the vocabulary is bad input.
- boxes: float32 (N, 4), normalized (ymin, xmin, ymax, xmax), with the convention that
  pixel i covers [i, i + 1):
    * from the person masks (default): the tight box of person k's own mask,
      (rmin / H, cmin / W, (rmax + 1) / H, (cmax + 1) / W), one row per person object;
    * from VOC XML (`voc_annotations_dir`): every <object> whose <name> is "person",
      in file order; VOC boxes are 1-based and inclusive, so
      ((ymin - 1) / H, (xmin - 1) / W, ymax / H, xmax / W), clipped to [0, 1].
  H and W are the size of the upright image.
- the image: annotations (the .mat masks, VOC boxes) refer to the upright image a
  viewer shows. A JPEG whose EXIF Orientation tag is 2..8 is turned upright and
  re-encoded (`tf.io.decode_jpeg`, which the pipeline uses, ignores EXIF); its masks
  must have the upright size, and a mismatch names the tag. Any JPEG is taken,
  whatever Pillow calls it; the converter's parent then decodes it with the
  pipeline's own decoder (`pipelines.decode.check_jpeg`): what is written is what the
  training pipeline reads.

The pieces every source shares (reading the JPEG upright, the size limit, the outcome
types) are `tools/source_images.py`'s; VOC boxes are read by `pipelines.boxes`. They are
re-exported here under their old names.

Everything wrong with an input raises `BadInputError`, whose message names the file and
the problem; `convert_one` turns that into a `Skipped` outcome for the converter.
Two cases are refused although the files may be fine:
- an id that is not valid UTF-8 (a file name in another encoding: Python lists it
  with lone surrogates): ids are stored as UTF-8 text (`image/id`);
- an image of more than `max_pixels` pixels (default DEFAULT_MAX_PIXELS, 0 = no
  limit), found from the JPEG header before anything is decoded or the `.mat` read:
  its masks alone take ~25 bytes a pixel here, and the training pipeline decodes it
  whole. Pascal VOC images are at most 500 x 500.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
import scipy.io

from pipelines import schema
from pipelines.boxes import voc_person_boxes
from tools import source_images
from tools.source_images import (  # re-exported: the converter and tests use these names
    BAD_INPUT, DEFAULT_MAX_PIXELS, EXIF_ORIENTATION, NO_PERSON, ORIENTATIONS,
    BadInputError, Converted, Skipped, _printable, check_size, mask_box, orientation_of,
    read_jpeg, size_mismatch)

__all__ = ["BAD_INPUT", "DEFAULT_MAX_PIXELS", "EXIF_ORIENTATION", "NO_PERSON",
           "ORIENTATIONS", "BadInputError", "Converted", "MatObject", "Skipped",
           "check_size", "check_sizes", "convert_one", "mask_box", "orientation_of",
           "paint", "read_example", "read_jpeg", "read_objects", "voc_person_boxes"]


@dataclasses.dataclass(frozen=True)
class MatObject:
    """One object of a Pascal-Part `.mat` file.

    Args:
      index: 1-based position of the object in the file.
      class_name: its class, e.g. "person".
      mask: bool (H, W) mask of the object.
      parts: ((part_name, bool (H, W) mask), ...) in file order; read for person
        objects only (empty for every other object).
    """

    index: int
    class_name: str
    mask: np.ndarray
    parts: tuple = ()

    @property
    def is_person(self) -> bool:
        return self.class_name == schema.PERSON_CLASS


# === .mat files ===

def _mat_string(value, what: str, path: str) -> str:
    """The text of a MATLAB char array as loadmat returns it (array(['person']))."""
    arr = np.asarray(value)
    if arr.size == 0:
        return ""
    if arr.size != 1 or arr.dtype.kind not in "US":
        raise BadInputError(f"{path}: {what} is not a string (got {arr.dtype} {arr.shape})")
    return str(arr.reshape(-1)[0]).strip()


def _mat_mask(value, what: str, path: str) -> np.ndarray:
    """A 2-D numeric MATLAB array as a bool mask (nonzero = inside)."""
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.size == 0 or arr.dtype.kind not in "biuf":
        raise BadInputError(
            f"{path}: {what} is not a 2-D numeric mask (got {arr.dtype} {arr.shape})")
    return arr != 0


def read_objects(path: str) -> list:
    """The objects of a Pascal-Part `.mat` file, as `MatObject`s in file order.

    Raises:
      BadInputError: the file is missing, not a readable MATLAB v5 file, has no `anno`
        struct or `objects` field, or an object lacks `class` or `mask`, or a person
        part lacks `part_name` or `mask`.
    """
    if not os.path.isfile(path):
        raise BadInputError(f"{path}: missing Pascal-Part annotation (.mat) file")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises many types for broken files
        raise BadInputError(
            f"{path}: cannot read as a MATLAB .mat file, truncated or malformed "
            f"({type(e).__name__}: {e})") from None
    if "anno" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise BadInputError(f"{path}: no 'anno' struct in the .mat file (variables: {keys})")
    anno = mat["anno"]
    if anno.dtype.names is None or anno.size < 1 or "objects" not in anno.dtype.names:
        raise BadInputError(f"{path}: 'anno' is not a struct with an 'objects' field")
    objects = np.asarray(anno.reshape(-1)[0]["objects"])
    if objects.size == 0:
        return []
    names = objects.dtype.names or ()
    for field in ("class", "mask"):
        if field not in names:
            raise BadInputError(f"{path}: the objects have no '{field}' field "
                                f"(fields: {list(names)})")
    result = []
    for index, obj in enumerate(objects.reshape(-1), start=1):
        class_name = _mat_string(obj["class"], f"object {index} class", path)
        what = f"object {index} ({class_name or 'no class'})"
        mask = _mat_mask(obj["mask"], f"{what} mask", path)
        parts = ()
        if class_name == schema.PERSON_CLASS and "parts" in names:
            parts = _read_parts(obj["parts"], what, path)
        result.append(MatObject(index=index, class_name=class_name, mask=mask, parts=parts))
    return result


def _read_parts(parts, what: str, path: str) -> tuple:
    parts = np.asarray(parts)
    if parts.size == 0:  # (0, 0): an object without parts
        return ()
    names = parts.dtype.names or ()
    for field in ("part_name", "mask"):
        if field not in names:
            raise BadInputError(f"{path}: {what} parts have no '{field}' field")
    result = []
    for k, part in enumerate(parts.reshape(-1), start=1):
        name = _mat_string(part["part_name"], f"{what} part {k} name", path)
        if name not in schema.PART_ID:
            raise BadInputError(
                f"{path}: {what} part {k} has unknown part name {name!r} "
                f"(not in the person part vocabulary schema.PART_NAMES)")
        result.append((name, _mat_mask(part["mask"], f"{what} part {k} ({name}) mask", path)))
    return tuple(result)


def check_sizes(objects, height: int, width: int, path: str, orientation: int = 1) -> None:
    """BadInputError when a mask of `objects` is not (height, width), the image size.

    `height`, `width` are the upright image's (after its EXIF `orientation`); the
    message says so when the orientation turned the image.
    """
    for obj in objects:
        masks = [(f"object {obj.index} ({obj.class_name}) mask", obj.mask)]
        masks += [(f"object {obj.index} ({obj.class_name}) part {name!r} mask", m)
                  for name, m in obj.parts]
        for what, mask in masks:
            if mask.shape != (height, width):
                raise BadInputError(f"{path}: " + size_mismatch(what, mask.shape, height,
                                                                  width, orientation))


def paint(persons, height: int, width: int):
    """(person_mask, parts_fine), both uint8 (height, width), of the person objects.

    Persons and their parts are painted in file order; later ones cover earlier ones.
    """
    if len(persons) > 255:
        raise ValueError(f"{len(persons)} persons do not fit a uint8 person mask")
    person_mask = np.zeros((height, width), np.uint8)
    parts_fine = np.zeros((height, width), np.uint8)
    for k, obj in enumerate(persons, start=1):
        person_mask[obj.mask] = k
        for name, mask in obj.parts:
            parts_fine[mask] = schema.PART_ID[name]
    return person_mask, parts_fine


# === One image ===

def read_example(image_id: str, *, pascal_part_dir: str, images_dir: str,
                 voc_annotations_dir: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
    """`Converted` for an image with persons, `Skipped(kind=NO_PERSON)` for one without.

    Checks the JPEG header's size against `max_pixels` (0 = no limit), reads
    `pascal_part_dir/ID.mat`, then (only when it has a person) `images_dir/ID.jpg` and,
    when given, `voc_annotations_dir/ID.xml`.

    Raises:
      BadInputError: a file is missing, truncated or malformed, or a mask does not
        match the image size, or a person part name is unknown, or the id is not
        valid UTF-8, or the image has more than `max_pixels` pixels.
    """
    mat_path = os.path.join(pascal_part_dir, image_id + ".mat")
    jpeg_path = os.path.join(images_dir, image_id + ".jpg")
    if _printable(image_id) != image_id:
        raise BadInputError(
            f"{_printable(mat_path)}: the file name is not valid UTF-8; image ids are "
            "stored as UTF-8 text (image/id): rename the files of this id")
    if not os.path.exists(mat_path) and not os.path.exists(jpeg_path):
        raise BadInputError(f"no files for id {image_id!r}: neither {mat_path} "
                            f"nor {jpeg_path} exists")
    check_size(jpeg_path, max_pixels)  # before the .mat: its masks are as large
    objects = read_objects(mat_path)
    persons = [obj for obj in objects if obj.is_person]
    if not persons:
        return Skipped(image_id, NO_PERSON, NO_PERSON)
    if len(persons) > 255:
        raise BadInputError(f"{mat_path}: {len(persons)} person objects, more than a uint8 "
                            "person mask holds (255)")
    jpeg, height, width, orientation = read_jpeg(jpeg_path)
    check_sizes(objects, height, width, mat_path, orientation)
    for obj in persons:
        if not obj.mask.any():
            raise BadInputError(f"{mat_path}: object {obj.index} (person) has an empty mask")
    person_mask, parts_fine = paint(persons, height, width)
    if voc_annotations_dir is not None:
        xml_path = os.path.join(voc_annotations_dir, image_id + ".xml")
        boxes = voc_person_boxes(xml_path, height, width)
        if len(boxes) == 0:
            raise BadInputError(f"{xml_path}: no <object> named person, but {mat_path} "
                                f"has {len(persons)} person object(s)")
    else:
        boxes = np.stack([mask_box(obj.mask) for obj in persons])
    return Converted(image_id=image_id, jpeg=jpeg, height=height, width=width, boxes=boxes,
                     person_mask=person_mask, parts_fine=parts_fine,
                     num_persons=len(persons), image_path=jpeg_path,
                     orientation=orientation)


# `read_example` with bad input returned as `Skipped(kind=BAD_INPUT)`: the worker function.
convert_one = functools.partial(source_images.convert_or_skip, read_example)
