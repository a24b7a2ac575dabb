"""Reading one image of a PNG label-map source: ID.jpg + ID.png, named by a vocabulary.

The per-image half of `tools/make_tfrecords.py --source=label_png`, run by its worker
processes: pure Python + NumPy + SciPy + PIL, no TensorFlow.

This is how Pascal-Person-Part is usually distributed, and LIP, CIHP and ATR: beside
each image a PNG whose pixel values are part labels. A vocabulary file names each value
(`pipelines.schema.read_vocabulary`: value 0 is the background, no part).

What one image becomes:
- fine part map (parts/fine): the PNG's values as they are, in the source's own
  vocabulary (written into every record and the manifest). The PNG is a palette image
  (its palette indices are the values) or a grey one (8-bit, or 16-bit with values
  under 256); a colour (RGB) PNG is bad input: it holds colours, not values. A value
  the vocabulary does not name is bad input, naming the file and the values.
- person mask (person/mask): the non-zero labels, split into persons by connected
  region (8-connected: pixels touching by a side or a corner are one region), k = the
  k-th region in raster order of its first pixel. Persons who touch form ONE region:
  one instance, and, without a box file, one box around both. A map with more than 255
  regions is bad input.
- boxes: from VOC XML (`voc_annotations_dir`, the <object>s named person) or a COCO
  file (`coco`, see `pipelines.boxes`) when given; otherwise one box per connected
  region, its tight box. A box file that gives the image no person box is bad input
  (the label map has persons).
- an image whose label map is all 0 is skipped as "no person".
- the image: `tools.source_images` (a JPEG, turned upright by its EXIF orientation;
  the label map must have the upright size).
"""

from __future__ import annotations

import functools

import os

import numpy as np
import scipy.ndimage
from PIL import Image

from pipelines import schema
from tools import source_images
from tools.source_images import (DEFAULT_MAX_PIXELS, NO_PERSON, BadInputError,
                                 Converted, Skipped, _printable, check_size, file_boxes,
                                 find_image, mask_box, read_jpeg, size_mismatch)

LABEL_EXTENSION = ".png"
# 8-connectivity: a region continues through a corner.
_CONNECTIVITY = np.ones((3, 3), bool)


def list_ids(labels_dir: str) -> list:
    """Sorted ids of the label maps (ID.png) in `labels_dir`, hidden files left out."""
    return sorted(name[:-len(LABEL_EXTENSION)] for name in os.listdir(labels_dir)
                  if name.lower().endswith(LABEL_EXTENSION) and not name.startswith(".")
                  and os.path.isfile(os.path.join(labels_dir, name)))


def read_label_map(path: str, vocabulary: schema.Vocabulary) -> np.ndarray:
    """uint8 (H, W) values of a palette or grey PNG label map.

    Raises:
      BadInputError naming the file: missing, not a PNG, a colour PNG, 16-bit values of
      256 or more, or values `vocabulary` does not name.
    """
    try:
        with Image.open(path) as im:
            im.load()
            fmt, mode = im.format, im.mode
            values = np.asarray(im)
    except FileNotFoundError:
        raise BadInputError(f"{path}: missing label map (.png)") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
        raise BadInputError(f"{path}: cannot read the label map ({type(e).__name__}: "
                            f"{e})") from None
    if fmt != "PNG":
        raise BadInputError(f"{path}: not a PNG (PIL reads it as {fmt})")
    if mode not in ("P", "L", "1", "I", "I;16", "I;16B", "I;16L"):
        raise BadInputError(f"{path}: a {mode} PNG holds colours, not label values; "
                            "a label map is a palette or grey PNG whose pixel values "
                            "are the labels")
    values = np.asarray(values)
    if values.ndim != 2:
        raise BadInputError(f"{path}: the label map has shape {values.shape}, not H x W")
    top = int(values.max()) if values.size else 0
    if top > 255 or (values.size and int(values.min()) < 0):
        raise BadInputError(f"{path}: values {int(values.min())}..{top} do not fit the "
                            "label values 0..255")
    values = values.astype(np.uint8)
    unknown = sorted(set(np.unique(values).tolist()) - set(range(vocabulary.num_values)))
    if unknown:
        raise BadInputError(
            f"{path}: label values {unknown[:10]} are not in the vocabulary "
            f"{vocabulary.describe()} (values 0..{vocabulary.num_values - 1})")
    return values


def persons_of(labels: np.ndarray, path: str):
    """(person_mask uint8, number of persons): the connected regions of labels > 0."""
    regions, count = scipy.ndimage.label(labels > 0, structure=_CONNECTIVITY)
    if count > 255:
        raise BadInputError(f"{path}: {count} separate labeled regions, more than a uint8 "
                            "person mask holds (255)")
    return regions.astype(np.uint8), count


def read_example(image_id: str, *, labels_dir: str, images_dir: str,
                 vocabulary: schema.Vocabulary, voc_annotations_dir: str | None = None,
                 coco_boxes=None, coco_size=None, coco_path: str = "",
                 coco_listed: bool = True,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
    """`Converted` for a label map with persons, `Skipped(kind=NO_PERSON)` for an empty one.

    Args:
      image_id: the id: `labels_dir/ID.png` and the JPEG `images_dir/ID.jpg`.
      labels_dir, images_dir: the directories.
      vocabulary: the `schema.Vocabulary` naming the label values.
      voc_annotations_dir: boxes from `ID.xml` there, when given.
      coco_boxes: boxes from a COCO file, when given: [[x, y, w, h], ...] of this image
        (the parent read the file once).
      coco_size: (height, width) the COCO file gives the image, checked when given.
      coco_path: the COCO file (for messages); coco_listed: False when that
        instances file does not list the image (bad input).
      max_pixels: images with more pixels are bad input (0 = no limit).

    Raises:
      BadInputError naming the file and the problem.
    """
    label_path = os.path.join(labels_dir, image_id + LABEL_EXTENSION)
    if _printable(image_id) != image_id:
        raise BadInputError(
            f"{_printable(label_path)}: the file name is not valid UTF-8; image ids are "
            "stored as UTF-8 text (image/id): rename the files of this id")
    image_path = find_image(images_dir, image_id)
    check_size(image_path, max_pixels)  # before the label map: it is as large
    labels = read_label_map(label_path, vocabulary)
    if not labels.any():
        return Skipped(image_id, NO_PERSON, f"{NO_PERSON} ({label_path} is all 0)")
    jpeg, height, width, orientation = read_jpeg(image_path)
    if labels.shape != (height, width):
        raise BadInputError(f"{label_path}: " + size_mismatch(
            "the label map", labels.shape, height, width, orientation))
    person_mask, count = persons_of(labels, label_path)
    boxes = file_boxes(image_id, height, width, orientation,
                       voc_annotations_dir=voc_annotations_dir, coco_boxes=coco_boxes,
                       coco_size=coco_size, coco_path=coco_path,
                       coco_listed=coco_listed)
    if boxes is None:
        boxes = np.stack([mask_box(person_mask == k) for k in range(1, count + 1)])
    elif len(boxes) == 0:
        raise BadInputError(f"{image_path}: the box file gives no person box, but "
                            f"{label_path} has {count} labeled region(s)")
    return Converted(image_id=image_id, jpeg=jpeg, height=height, width=width, boxes=boxes,
                     person_mask=person_mask, parts_fine=labels, num_persons=count,
                     image_path=image_path, orientation=orientation)


# `read_example` with bad input returned as `Skipped(kind=BAD_INPUT)`: the worker function.
convert_one = functools.partial(source_images.convert_or_skip, read_example)
