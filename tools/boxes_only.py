"""Reading one image of a box-only source: a photo and its person boxes, no part labels.

The per-image half of `tools/make_tfrecords.py --source=boxes_only`, run by its worker
processes: pure Python + NumPy + PIL, no TensorFlow. These records are the paper's
unlabeled pool ("many images with only a human box"): train.py reads them through
`--unlabeled_data`; they carry no part map and no instance mask and say so
(annotation/kind "boxes", `pipelines/schema.py`).

The boxes come from one box file (`tools.source_images.file_boxes`): VOC XML (`ID.xml`,
the <object>s named person), a COCO instances file (crowd annotations skipped and
counted) or a COCO-format detection results file (detections under `--min_score`
dropped and counted): see `pipelines.boxes`. An image with no box left is skipped and
counted ("no person box"). The image: `tools.source_images` (a JPEG, turned upright by
its EXIF orientation; boxes refer to the upright image).
"""

from __future__ import annotations

import functools

from tools import source_images
from tools.source_images import (DEFAULT_MAX_PIXELS, NO_PERSON, BadInputError,
                                 Converted, Skipped, _printable, check_size, file_boxes,
                                 find_image, read_jpeg)


def read_example(image_id: str, *, images_dir: str, voc_annotations_dir: str | None = None,
                 coco_boxes=None, coco_size=None, coco_path: str = "",
                 coco_listed: bool = True,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
    """`Converted` (no parts) for an image with a person box, `Skipped(NO_PERSON)` else.

    Args:
      image_id: the id: the JPEG `images_dir/ID.jpg` (or .jpeg).
      images_dir: the directory of the images.
      voc_annotations_dir: boxes from `ID.xml` there; or
      coco_boxes: the image's [[x, y, w, h], ...] from a COCO file (None: not listed;
        [] listed without a person box), with coco_size (height, width) the file gives
        coco_path (messages) and coco_listed (False: an instances file that does
        not list the image, bad input).
      max_pixels: images with more pixels are bad input (0 = no limit).

    Raises:
      BadInputError naming the file and the problem.
    """
    if _printable(image_id) != image_id:
        raise BadInputError(
            f"{_printable(image_id)}: the file name is not valid UTF-8; image ids are "
            "stored as UTF-8 text (image/id): rename the image")
    image_path = find_image(images_dir, image_id)
    check_size(image_path, max_pixels)
    jpeg, height, width, orientation = read_jpeg(image_path)
    boxes = file_boxes(image_id, height, width, orientation,
                       voc_annotations_dir=voc_annotations_dir,
                       coco_boxes=[] if coco_boxes is None and voc_annotations_dir is None
                       else coco_boxes,
                       coco_size=coco_size, coco_path=coco_path,
                       coco_listed=coco_listed)
    if len(boxes) == 0:
        where = (f"{voc_annotations_dir}/{image_id}.xml" if voc_annotations_dir is not None
                 else coco_path)
        return Skipped(image_id, NO_PERSON, f"no person box in {where}")
    return Converted(image_id=image_id, jpeg=jpeg, height=height, width=width, boxes=boxes,
                     person_mask=None, parts_fine=None, num_persons=len(boxes),
                     image_path=image_path, orientation=orientation)


# `read_example` with bad input returned as `Skipped(kind=BAD_INPUT)`: the worker function.
convert_one = functools.partial(source_images.convert_or_skip, read_example)
