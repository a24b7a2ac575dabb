"""Person boxes from the files users hand over: VOC XML, COCO instances, COCO detections.

The converter (`tools/make_tfrecords.py`, every source) and `predict.py` read human
regions through here. Pure Python + NumPy: no TensorFlow.

Box convention (DESIGN.md §1): normalized (ymin, xmin, ymax, xmax), pixel i covering
[i, i + 1).
- VOC XML: every <object> whose <name> is "person"; coordinates are 1-based and
  inclusive, so ((ymin - 1) / H, (xmin - 1) / W, ymax / H, xmax / W), clipped to [0, 1].
- COCO: `bbox` = [x, y, width, height] in pixels from the image's top-left corner, so
  (y / H, x / W, (y + height) / H, (x + width) / W), clipped to [0, 1].

A COCO file (`read_coco`) is either
- an instances file: {"images": [{"id", "file_name", "width", "height"}], "annotations":
  [{"image_id", "category_id", "bbox", "iscrowd"}], "categories": [{"id", "name"}]}:
  the annotations of the category named "person"; crowd annotations (iscrowd = 1, a
  box around a group) are skipped and counted; or
- detection results (what COCO-format detectors write): a list of {"image_id",
  "category_id", "bbox", "score"}: the person category is id 1 (COCO's) unless an
  instances file names it; an image id matches the image whose file stem is that id
  (numerically when both are digits: id 139 is 000000000139.jpg).
Any entry with a "score" below `min_score` is dropped and counted. Images are matched
by file stem (the file name without directories and extension).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import xml.etree.ElementTree as ET
from typing import Optional

import numpy as np

PERSON = "person"
# Detections with a lower score are dropped (make_tfrecords.py and predict.py
# --min_score); 0.5 is the usual cut of COCO-format person detectors' outputs.
DEFAULT_MIN_SCORE = 0.5
# COCO's category id of "person", for detection results that name no categories.
COCO_PERSON_ID = 1


class BadInputError(ValueError):
    """An input that cannot be used; the message names the file and the problem."""


def voc_person_boxes(path: str, height: int, width: int) -> np.ndarray:
    """float32 (N, 4) normalized boxes of the <object>s named "person" in a VOC XML file.

    VOC coordinates are 1-based and inclusive: pixel columns xmin..xmax, so the box is
    ((ymin - 1) / H, (xmin - 1) / W, ymax / H, xmax / W), clipped to [0, 1].
    Only each object's own <bndbox> is read (not those of its <part>s).

    Raises:
      BadInputError: the file is missing or malformed, or a person has no numeric,
        non-empty <bndbox>.
    """
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise BadInputError(f"{path}: missing VOC annotation (.xml) file") from None
    except (ET.ParseError, OSError) as e:
        raise BadInputError(f"{path}: malformed VOC XML ({e})") from None
    boxes = []
    for index, obj in enumerate(root.findall("object"), start=1):
        if (obj.findtext("name") or "").strip() != PERSON:
            continue
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise BadInputError(f"{path}: person <object> {index} has no <bndbox>")
        try:
            xmin, ymin, xmax, ymax = (float(bndbox.findtext(k))
                                      for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise BadInputError(f"{path}: person <object> {index}: <bndbox> needs numeric "
                                "<xmin>, <ymin>, <xmax>, <ymax>") from None
        if xmax < xmin or ymax < ymin:
            raise BadInputError(f"{path}: person <object> {index}: empty box "
                                f"xmin={xmin:g} xmax={xmax:g} ymin={ymin:g} ymax={ymax:g}")
        boxes.append([(ymin - 1) / height, (xmin - 1) / width, ymax / height, xmax / width])
    return np.clip(np.array(boxes, np.float64).reshape(-1, 4), 0.0, 1.0).astype(np.float32)


def coco_boxes(bboxes, height: int, width: int) -> np.ndarray:
    """float32 (N, 4) normalized boxes of COCO [x, y, width, height] pixel boxes."""
    boxes = np.asarray(bboxes, np.float64).reshape(-1, 4)
    x, y, w, h = boxes.T
    out = np.stack([y / height, x / width, (y + h) / height, (x + w) / width], axis=1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def image_key(name) -> object:
    """The key an image is matched by: its file stem; an int when it is all digits."""
    stem = os.path.splitext(os.path.basename(str(name)))[0]
    return int(stem) if stem.isdigit() else stem


@dataclasses.dataclass
class CocoBoxes:
    """The person boxes of a COCO file, by image (`read_coco`).

    Attributes:
      path: the file.
      kind: "instances" or "detections".
      boxes: {image key: [[x, y, w, h], ...]} of the person boxes kept.
      sizes: {image key: (height, width)} the file gives (instances files).
      listed: the image keys the file lists (instances: every image of "images";
        detections: None, an image without detections has none).
      counts: {"crowd_skipped", "below_min_score", "other_category", "kept"}: entries.
      person_category: the category id taken as person.
    """
    path: str
    kind: str
    boxes: dict
    sizes: dict
    listed: Optional[set]
    counts: dict
    person_category: int

    def boxes_of(self, name) -> list:
        """The [x, y, w, h] boxes of the image file `name` (by its stem)."""
        return self.boxes.get(image_key(name), [])

    def knows(self, name) -> bool:
        """Whether the file says anything about image `name` (always for detections)."""
        return self.listed is None or image_key(name) in self.listed


def _require(condition, path, message):
    if not condition:
        raise BadInputError(f"{path}: {message}")


def read_coco(path: str, *, min_score: float = DEFAULT_MIN_SCORE) -> CocoBoxes:
    """The person boxes of a COCO instances file or a COCO-format detection results file.

    Args:
      path: the JSON file (read through `pipelines.textfiles`).
      min_score: entries with a "score" below it are dropped (and counted).

    Raises:
      BadInputError naming the file: not JSON, neither form, an entry without a usable
      image_id, category_id or bbox (its index named), a box of negative size, or an
      instances file without a "person" category.
    """
    from pipelines import textfiles

    try:
        content = textfiles.read_json(path)
    except (OSError, ValueError) as e:
        raise BadInputError(f"{path}: cannot read it as JSON ({e})") from None
    counts = collections.Counter(crowd_skipped=0, below_min_score=0, other_category=0,
                                 kept=0)
    sizes, listed = {}, None
    if isinstance(content, list):
        kind, entries, person = "detections", content, COCO_PERSON_ID
        ids = None
    elif isinstance(content, dict) and isinstance(content.get("annotations"), list):
        kind, entries = "instances", content["annotations"]
        categories = content.get("categories") or []
        persons = [c.get("id") for c in categories
                   if isinstance(c, dict) and c.get("name") == PERSON]
        _require(len(persons) == 1, path, f"expected one category named {PERSON!r} in "
                 f"'categories', found {len(persons)}")
        person = persons[0]
        images = content.get("images")
        _require(isinstance(images, list), path, "an instances file needs an 'images' list")
        ids, listed = {}, set()
        for i, image in enumerate(images):
            _require(isinstance(image, dict) and "id" in image
                     and isinstance(image.get("file_name"), str), path,
                     f"images[{i}] needs 'id' and 'file_name'")
            key = image_key(image["file_name"])
            ids[image["id"]] = key
            listed.add(key)
            if isinstance(image.get("height"), int) and isinstance(image.get("width"), int):
                sizes[key] = (image["height"], image["width"])
    else:
        raise BadInputError(f"{path}: neither a COCO instances file (an object with "
                            "'images', 'annotations', 'categories') nor COCO-format "
                            "detection results (a list of {image_id, category_id, bbox, "
                            "score})")
    boxes = collections.defaultdict(list)
    for i, entry in enumerate(entries):
        what = f"{'annotations' if kind == 'instances' else 'entry'}[{i}]"
        _require(isinstance(entry, dict), path, f"{what} is not an object")
        bbox = entry.get("bbox")
        _require(isinstance(bbox, list) and len(bbox) == 4
                 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                         for v in bbox), path,
                 f"{what}: 'bbox' must be [x, y, width, height] numbers, got {bbox!r:.80}")
        _require(bbox[2] >= 0 and bbox[3] >= 0, path,
                 f"{what}: box of negative size {bbox}")
        _require("image_id" in entry and "category_id" in entry, path,
                 f"{what} needs 'image_id' and 'category_id'")
        if entry["category_id"] != person:
            counts["other_category"] += 1
            continue
        if entry.get("iscrowd"):
            counts["crowd_skipped"] += 1
            continue
        score = entry.get("score")
        if score is not None:
            _require(isinstance(score, (int, float)), path, f"{what}: 'score' {score!r} "
                     "is not a number")
            if score < min_score:
                counts["below_min_score"] += 1
                continue
        if ids is not None:
            _require(entry["image_id"] in ids, path,
                     f"{what}: image_id {entry['image_id']!r} is not among 'images'")
            key = ids[entry["image_id"]]
        else:
            key = image_key(entry["image_id"])
        boxes[key].append([float(v) for v in bbox])
        counts["kept"] += 1
    return CocoBoxes(path=path, kind=kind, boxes=dict(boxes), sizes=sizes, listed=listed,
                     counts=dict(counts), person_category=person)
