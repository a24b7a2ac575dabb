"""The sources of `tools/make_tfrecords.py`: what each reads and how its ids are found.

A registry (STYLE.md: "a family of interchangeable things gets a small interface and a
registry"): the converter reads `SOURCES`, and adding a source touches this module and
its per-image reader only. A source turns the checked arguments into a `Plan`: the ids
in order with each id's own arguments, the picklable per-image function its worker
processes run, and what the manifest says about it.

  pascal_part  Pascal VOC images + Pascal-Part .mat files (`tools/pascal_part.py`):
               --pascal_part_dir, --images_dir, [--voc_annotations_dir]; ids: every
               ID.mat. Records carry parts, Pascal-Part vocabulary.
  label_png    ID.jpg + ID.png label maps (`tools/label_png.py`): --labels_dir,
               --images_dir, --vocabulary, [--voc_annotations_dir | --coco_file];
               ids: every ID.png. Records carry parts, the vocabulary file's names.
  boxes_only   images + person boxes (`tools/boxes_only.py`): --images_dir and one of
               --voc_annotations_dir, --coco_file (instances or detection results,
               --min_score); ids: every image in --images_dir. Records carry boxes only.

Every source takes --split_list (one id a line) instead of its default ids. A flag the
source does not read is refused, so that nothing given is silently ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Optional

from pipelines import boxes as boxes_lib
from pipelines import schema, textfiles
from tools import boxes_only, label_png, pascal_part, source_images


class ArgumentError(ValueError):
    """A bad argument/flag, found before any work; the message starts with the flag."""


@dataclasses.dataclass
class Plan:
    """What a source will convert.

    Attributes:
      tasks: [(image_id, {argument: value})] in output order: each id with the
        arguments of its own (e.g. its COCO boxes).
      convert_one: image_id, **task arguments -> `source_images.Converted` or
        `Skipped`; picklable (a module function with the shared arguments bound), so
        worker processes can run it.
      annotation: what the records carry (schema.ANNOTATION_PARTS or _BOXES).
      vocabulary: the `schema.Vocabulary` of the part maps (None for box-only).
      box_source: where the boxes come from, for the manifest.
      sources: the input directories and files, for the manifest.
      counts: what the source dropped before any image was read (crowd annotations,
        detections under --min_score), for the manifest.
    """
    tasks: list
    convert_one: Callable
    annotation: str
    vocabulary: Optional[schema.Vocabulary]
    box_source: str
    sources: dict
    counts: dict


@dataclasses.dataclass(frozen=True)
class Source:
    """One source: its name, the flags it reads, and how it makes its `Plan`."""
    name: str
    summary: str
    flags: tuple
    make_plan: Callable


# === Argument checks ===

def _check_path(flag: str, path, exists, what: str) -> str:
    """The absolute path if `exists(path)`; ArgumentError naming the flag otherwise."""
    if not path:
        raise ArgumentError(f"--{flag}: required")
    path = os.fspath(path)
    if not exists(path):
        raise ArgumentError(f"--{flag}: {path} is not a {what}")
    return os.path.abspath(path)


def check_dir(flag: str, path) -> str:
    """The absolute path of an existing directory; ArgumentError naming the flag."""
    return _check_path(flag, path, os.path.isdir, "directory")


def _check_file(flag: str, path) -> str:
    return _check_path(flag, path, os.path.isfile, "file")


def read_split_list(path: str) -> list:
    """Ids of a split list: one id a line, blank lines ignored, last newline optional;
    UTF-8 with or without a byte-order mark, LF or CRLF (`pipelines.textfiles`)."""
    try:
        lines = textfiles.read_lines(path)
    except (OSError, ValueError) as e:
        raise ArgumentError(f"--split_list: cannot read {path} ({e})") from None
    ids, seen = [], {}
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) > 1 or "/" in tokens[0] or "\\" in tokens[0] or tokens[0] in (".", ".."):
            raise ArgumentError(f"--split_list: {path} line {number}: expected one image id "
                                f"a line (like 2008_000652), got {line.strip()!r}")
        image_id = tokens[0]
        if image_id in seen:
            raise ArgumentError(f"--split_list: {path} lists {image_id!r} twice "
                                f"(lines {seen[image_id]} and {number})")
        seen[image_id] = number
        ids.append(image_id)
    if not ids:
        raise ArgumentError(f"--split_list: {path} lists no ids")
    return ids


def _ids(args, default_ids, flag, where) -> list:
    if args["split_list"] is not None:
        return read_split_list(args["split_list"])
    if not default_ids:
        raise ArgumentError(f"--{flag}: {where}")
    return default_ids


def _one_box_file(args, required: bool) -> None:
    given = [f for f in ("voc_annotations_dir", "coco_file") if args.get(f)]
    if len(given) > 1:
        raise ArgumentError("--voc_annotations_dir and --coco_file: give one box source, "
                            "not both")
    if required and not given:
        raise ArgumentError("--voc_annotations_dir or --coco_file: --source=boxes_only "
                            "needs the person boxes (VOC XML, a COCO instances file or "
                            "COCO-format detection results)")


def _read_coco(args):
    """(CocoBoxes or None, manifest counts) of --coco_file."""
    if not args.get("coco_file"):
        return None, {}
    try:
        coco = boxes_lib.read_coco(args["coco_file"], min_score=args["min_score"])
    except boxes_lib.BadInputError as e:
        raise ArgumentError(f"--coco_file: {e}") from None
    counts = {"crowd_annotations_skipped": coco.counts["crowd_skipped"],
              "boxes_below_min_score": coco.counts["below_min_score"],
              "other_category_entries": coco.counts["other_category"],
              "person_boxes_read": coco.counts["kept"]}
    return coco, counts


def _coco_task(coco, image_id) -> dict:
    """The per-image arguments of `file_boxes` for an image of a COCO file."""
    if coco is None:
        return {}
    key = boxes_lib.image_key(image_id)
    return {"coco_boxes": coco.boxes_of(image_id), "coco_size": coco.sizes.get(key),
            "coco_path": coco.path, "coco_listed": coco.knows(image_id)}


def _box_source(args, coco, default: str) -> str:
    if args.get("voc_annotations_dir"):
        return "voc_xml"
    if coco is not None:
        return f"coco_{coco.kind}"
    return default


# === The sources ===

def _pascal_part_plan(args) -> Plan:
    ids = _ids(args, sorted(
        name[:-len(".mat")] for name in os.listdir(args["pascal_part_dir"])
        if name.endswith(".mat") and not name.startswith(".")
        and os.path.isfile(os.path.join(args["pascal_part_dir"], name))),
        "pascal_part_dir", f"no .mat files in {args['pascal_part_dir']}")
    fn = functools.partial(pascal_part.convert_one, pascal_part_dir=args["pascal_part_dir"],
                           images_dir=args["images_dir"],
                           voc_annotations_dir=args["voc_annotations_dir"],
                           max_pixels=args["max_pixels"])
    return Plan(tasks=[(i, {}) for i in ids], convert_one=fn,
                annotation=schema.ANNOTATION_PARTS, vocabulary=schema.PASCAL_PART,
                box_source=_box_source(args, None, "person_mask"),
                sources={k: args[k] for k in ("pascal_part_dir", "images_dir",
                                              "voc_annotations_dir", "split_list")},
                counts={})


def _label_png_plan(args) -> Plan:
    _one_box_file(args, required=False)
    try:
        vocabulary = schema.read_vocabulary(args["vocabulary"])
    except ValueError as e:
        raise ArgumentError(f"--vocabulary: {e}") from None
    coco, counts = _read_coco(args)
    ids = _ids(args, label_png.list_ids(args["labels_dir"]), "labels_dir",
               f"no .png label maps in {args['labels_dir']}")
    fn = functools.partial(label_png.convert_one, labels_dir=args["labels_dir"],
                           images_dir=args["images_dir"], vocabulary=vocabulary,
                           voc_annotations_dir=args["voc_annotations_dir"],
                           max_pixels=args["max_pixels"])
    return Plan(tasks=[(i, _coco_task(coco, i)) for i in ids], convert_one=fn,
                annotation=schema.ANNOTATION_PARTS, vocabulary=vocabulary,
                box_source=_box_source(args, coco, "connected_regions"),
                sources={k: args[k] for k in ("labels_dir", "images_dir", "vocabulary",
                                              "voc_annotations_dir", "coco_file",
                                              "split_list")},
                counts=counts)


def _boxes_only_plan(args) -> Plan:
    _one_box_file(args, required=True)
    coco, counts = _read_coco(args)
    ids = _ids(args, source_images.list_image_ids(args["images_dir"]), "images_dir",
               f"no images in {args['images_dir']}")
    fn = functools.partial(boxes_only.convert_one, images_dir=args["images_dir"],
                           voc_annotations_dir=args["voc_annotations_dir"],
                           max_pixels=args["max_pixels"])
    return Plan(tasks=[(i, _coco_task(coco, i)) for i in ids], convert_one=fn,
                annotation=schema.ANNOTATION_BOXES, vocabulary=None,
                box_source=_box_source(args, coco, ""),
                sources={k: args[k] for k in ("images_dir", "voc_annotations_dir",
                                              "coco_file", "split_list")},
                counts=counts)


SOURCES = {
    "pascal_part": Source(
        "pascal_part", "Pascal VOC images + Pascal-Part .mat annotations",
        ("pascal_part_dir", "images_dir", "voc_annotations_dir", "split_list"),
        _pascal_part_plan),
    "label_png": Source(
        "label_png", "ID.jpg + ID.png label maps named by a vocabulary file",
        ("labels_dir", "images_dir", "vocabulary", "voc_annotations_dir", "coco_file",
         "min_score", "split_list"),
        _label_png_plan),
    "boxes_only": Source(
        "boxes_only", "images + person boxes (VOC XML, COCO instances or detections)",
        ("images_dir", "voc_annotations_dir", "coco_file", "min_score", "split_list"),
        _boxes_only_plan),
}

# Flags of every source, the directories and files among them, and their checks.
_DIRS = ("pascal_part_dir", "images_dir", "labels_dir", "voc_annotations_dir")
_FILES = ("vocabulary", "coco_file", "split_list")
_REQUIRED = {"pascal_part": ("pascal_part_dir", "images_dir"),
             "label_png": ("labels_dir", "images_dir", "vocabulary"),
             "boxes_only": ("images_dir",)}
DEFAULT_MIN_SCORE = boxes_lib.DEFAULT_MIN_SCORE


def resolve(source: str, given: dict) -> dict:
    """The checked arguments of `source` from the source flags `given` (paths absolute).

    Args:
      source: a key of SOURCES.
      given: {flag: value} of the source flags (None = not given); min_score may be
        None for the default.

    Raises:
      ArgumentError naming the flag: an unknown source, a flag this source does not
      read, a required one missing, a directory or file that does not exist, an
      unreadable vocabulary, split list or COCO file.
    """
    if source not in SOURCES:
        raise ArgumentError(f"--source: must be one of {', '.join(SOURCES)}, got {source!r}")
    reads = SOURCES[source].flags
    for flag, value in given.items():
        if value is not None and flag not in reads:
            raise ArgumentError(f"--{flag}: --source={source} does not read it (it reads "
                                f"{', '.join('--' + f for f in reads)})")
    args = {}
    for flag in _DIRS:
        value = given.get(flag)
        required = flag in _REQUIRED[source]
        args[flag] = check_dir(flag, value) if (value is not None or required) else None
    for flag in _FILES:
        value = given.get(flag)
        required = flag in _REQUIRED[source]
        args[flag] = _check_file(flag, value) if (value is not None or required) else None
    min_score = given.get("min_score")
    if min_score is None:
        min_score = DEFAULT_MIN_SCORE
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)):
        raise ArgumentError(f"--min_score: must be a number, got {min_score!r}")
    args["min_score"] = float(min_score)
    return args


def make_plan(source: str, args: dict, max_pixels: int) -> Plan:
    """The `Plan` of `source` for checked `args` (`resolve`)."""
    return SOURCES[source].make_plan(dict(args, max_pixels=max_pixels))
