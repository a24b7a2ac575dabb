"""Part label maps of new photos, from a training run or a SavedModel.

`predict.py` turns its flags into a `PredictConfig` once and calls `predict`; tests call
`predict` directly. Nothing here reads absl flags.

    python predict.py --model_dir=runs/coseg --images=photos/ --whole_image \
        --output_dir=parts/
    python predict.py --saved_model=exports/coseg --images='photos/*.jpg' \
        --coco_file=detections.json --min_score=0.5 --output_dir=parts/

Inputs:
- the model: a run directory (`--model_dir`, `--checkpoint`), or an export
  (`--saved_model`: EXPORT_DIR or EXPORT_DIR/<version>);
- the images: a directory (every .jpg, .jpeg and .png in it, any case) or a glob (or
  comma-separated globs). JPEG and PNG photos are read (an alpha channel is dropped);
  an EXIF orientation is applied, so maps and boxes refer to the upright image a viewer
  shows. The id of an image is its file stem: two images with one stem are refused;
- the human region the model reads (DESIGN.md §1, the union of the person boxes), one
  of: `--coco_file` (a COCO instances file, or COCO-format detection results with
  `--min_score`; images matched by file stem, `pipelines.boxes`), `--voc_annotations_dir`
  (ID.xml), or `--whole_image` (one box covering the image).

Outputs (`OUTPUT_DIR`, written through `tf.io.gfile`, each file renamed into place when
complete):

    ID.png           palette PNG: pixel value = class id; the palette is legend.json's
    ID_overlay.jpg   the photo with the classes laid over it (half opacity), its boxes
                     outlined (`--overlays`, on by default)
    legend.json      class id, name and RGB colour of each class; the scheme (classes
                     and the vocabulary names each merges); the model
    summary.json     counts; the images written (their boxes); each image skipped and why

An image that cannot be read (not a JPEG or PNG, truncated), that a box file says
nothing about, or that has no person box, is named on stderr, listed in summary.json
and skipped; the others go on. A progress bar runs on stderr; the last line is the
summary count.

Model paths. The SavedModel path calls its `serving_default` signature exactly as TF
Serving would (image uint8 [1, H, W, 3], human_boxes float32 [1, N, 4]); the
run-directory path calls the same computation in memory
(`export.SegmentationServer.serve_boxes`), so the two give the same label maps
(tests/test_predict.py).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from coseg_tf import errors, evaluation, export, run_dir, visualize
from pipelines import boxes as boxes_lib
from pipelines import dataset_files, schema

ConfigError = errors.ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LEGEND_FILE = "legend.json"
SUMMARY_FILE = "summary.json"
LABEL_SUFFIX = ".png"
OVERLAY_SUFFIX = "_overlay.jpg"
NO_BOX = "no person box"
BAD_FILE = "bad file"


@dataclasses.dataclass
class PredictConfig:
    """Everything a prediction needs; field names equal the flag names of predict.py.

    Args:
      images: a directory of images, or a glob (or comma-separated globs).
      output_dir: where the label maps, overlays, legend and summary go.
      model_dir: a training run directory (`coseg_tf.run_dir`); or
      saved_model: an export (EXPORT_DIR or EXPORT_DIR/<version>).
      checkpoint: with model_dir: 'last', 'best' or a `.weights.h5` of the run.
      coco_file: person boxes from a COCO instances file or detection results.
      min_score: with coco_file: boxes of a lower score are dropped.
      voc_annotations_dir: person boxes from ID.xml files there.
      whole_image: the human region is the whole image.
      overlays: also write ID_overlay.jpg.
      verbose: 0 silent, 1 a progress bar and the summary on stderr.
    """
    images: str
    output_dir: str
    model_dir: Optional[str] = None
    saved_model: Optional[str] = None
    checkpoint: str = "last"
    coco_file: Optional[str] = None
    min_score: float = boxes_lib.DEFAULT_MIN_SCORE
    voc_annotations_dir: Optional[str] = None
    whole_image: bool = False
    overlays: bool = True
    verbose: int = 1


# === Inputs ===

def list_images(images: str) -> list:
    """Sorted image paths of a directory (.jpg, .jpeg, .png) or of a glob pattern.

    Raises ConfigError naming --images: nothing matches, or two images share an id
    (file stem), whose outputs would overwrite each other.
    """
    if not images:
        raise ConfigError("--images is required: a directory of images or a glob")
    if tf.io.gfile.isdir(images):
        paths = sorted(os.path.join(images, n.rstrip("/")) for n in tf.io.gfile.listdir(images)
                       if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
                       and not n.startswith("."))
        if not paths:
            raise ConfigError(f"--images={images}: no .jpg, .jpeg or .png file in it")
    else:
        try:
            paths = dataset_files.list_files(images)
        except ValueError as e:
            raise ConfigError(f"--images={images}: {e}") from None
    by_id = {}
    for path in paths:
        image_id = image_id_of(path)
        if image_id in by_id:
            raise ConfigError(f"--images={images}: {by_id[image_id]} and {path} have the "
                              f"same id {image_id!r} (file stem); their outputs would "
                              "overwrite each other")
        by_id[image_id] = path
    return paths


def image_id_of(path: str) -> str:
    """The id of an image file: its stem (name without directory and extension)."""
    return os.path.splitext(os.path.basename(path))[0]


def read_image(path: str) -> np.ndarray:
    """uint8 [H, W, 3] RGB of a JPEG or PNG, turned upright by its EXIF orientation.

    Raises boxes.BadInputError naming the file.
    """
    from PIL import Image, ImageOps

    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except tf.errors.OpError as e:
        raise boxes_lib.BadInputError(f"{path}: cannot read it ({e.message})") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in ("JPEG", "MPO", "PNG"):
                raise boxes_lib.BadInputError(f"{path}: a {im.format} image; predict.py "
                                              "reads JPEG and PNG")
            upright = ImageOps.exif_transpose(im)
            return np.asarray(upright.convert("RGB"), np.uint8)
    except boxes_lib.BadInputError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
        raise boxes_lib.BadInputError(f"{path}: not a readable JPEG or PNG "
                                      f"({type(e).__name__}: {e})") from None


class _Regions:
    """Person boxes of each image, from the one source the config names."""

    def __init__(self, config: PredictConfig):
        given = [name for name, on in (("--coco_file", config.coco_file),
                                       ("--voc_annotations_dir", config.voc_annotations_dir),
                                       ("--whole_image", config.whole_image)) if on]
        if len(given) != 1:
            raise ConfigError("the human region: pass exactly one of --coco_file, "
                              "--voc_annotations_dir and --whole_image"
                              + (f" (got {', '.join(given)})" if given else ""))
        self.source = given[0]
        self.coco = None
        self.voc_dir = config.voc_annotations_dir
        if config.coco_file:
            try:
                self.coco = boxes_lib.read_coco(config.coco_file, min_score=config.min_score)
            except boxes_lib.BadInputError as e:
                raise ConfigError(f"--coco_file: {e}") from None
        if self.voc_dir and not tf.io.gfile.isdir(self.voc_dir):
            raise ConfigError(f"--voc_annotations_dir={self.voc_dir}: not a directory")

    def boxes(self, image_id: str, height: int, width: int) -> np.ndarray:
        """float32 [N, 4] normalized boxes; boxes.BadInputError naming the file."""
        if self.coco is not None:
            if not self.coco.knows(image_id):
                raise boxes_lib.BadInputError(f"{self.coco.path}: image {image_id!r} is not "
                                              "among the images of this instances file")
            size = self.coco.sizes.get(boxes_lib.image_key(image_id))
            if size is not None and tuple(size) != (height, width):
                raise boxes_lib.BadInputError(
                    f"{self.coco.path}: image {image_id!r} is {size[0]}x{size[1]} (HxW) "
                    f"there, but {height}x{width} as shown upright")
            return boxes_lib.coco_boxes(self.coco.boxes_of(image_id), height, width)
        if self.voc_dir is not None:
            return boxes_lib.voc_person_boxes(os.path.join(self.voc_dir, image_id + ".xml"),
                                              height, width)
        return np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)


# === The model ===

def load_segmenter(config: PredictConfig):
    """(segment, class names, model info, model path): segment(image uint8 [1, H, W, 3],
    boxes float32 [1, N, 4]) -> {"labels" int32 [1, H, W], "probabilities"}.

    Raises ConfigError naming the flag: not exactly one model, or one that cannot be
    loaded.
    """
    if bool(config.model_dir) == bool(config.saved_model):
        raise ConfigError("pass exactly one of --model_dir (a training run) and "
                          "--saved_model (an export)")
    if config.model_dir:
        try:
            network, info = run_dir.load_network(config.model_dir, config.checkpoint)
        except ConfigError as e:
            raise ConfigError(f"--model_dir={config.model_dir}: {e}") from None
        # The computation serving_default serves, in memory (no asset: never saved).
        server = export.SegmentationServer(network)
        return (lambda image, boxes: server.serve_boxes(image, boxes),
                list(info["class_names"]), info,
                run_dir.checkpoint_path(config.model_dir, config.checkpoint))
    path = evaluation.resolve_saved_model(config.saved_model)
    names = evaluation.read_class_names(path)
    info = evaluation.read_saved_model_info(path)
    if not names:
        raise ConfigError(f"--saved_model={config.saved_model}: {path} has no "
                          f"assets/{export.CLASS_NAMES_ASSET}: not an export of export.py")
    try:
        loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise ConfigError(f"--saved_model={config.saved_model}: cannot load {path} "
                          f"({e})") from None
    if export.DEFAULT_SIGNATURE not in loaded.signatures:
        raise ConfigError(f"--saved_model={config.saved_model}: no signature "
                          f"{export.DEFAULT_SIGNATURE!r} (has {sorted(loaded.signatures)})")
    signature = loaded.signatures[export.DEFAULT_SIGNATURE]

    def segment(image, boxes):
        # Exactly TF Serving's call: the signature's named inputs, its dtypes.
        return signature(image=image, human_boxes=boxes)

    segment.keepalive = loaded  # the signature's variables live as long as `loaded`
    return segment, names, info, path


# === A run ===

def _legend(class_names, info, model_path) -> dict:
    colors = visualize.class_colors(class_names)
    scheme = None
    try:
        recorded = schema.scheme_from_info(info or {})
        scheme = recorded.to_json() if recorded is not None else None
    except ValueError:
        pass
    return {
        "classes": [{"id": i, "name": n, "color": [int(c) for c in colors[i]]}
                    for i, n in enumerate(class_names)],
        "label_maps": f"ID{LABEL_SUFFIX}: palette PNG, pixel value = class id",
        "scheme": scheme,
        "vocabulary": (info or {}).get("vocabulary"),
        "model": model_path,
    }


def predict(config: PredictConfig) -> dict:
    """Writes the label map (and overlay) of every image; returns the summary.

    Returns the content of OUTPUT_DIR/summary.json: "counts" {"images", "written",
    "skipped", "skipped_no_person_box", "skipped_bad_file"}, "written" [{"id", "image",
    "label_map", "overlay", "boxes"}], "skipped" [{"image", "kind", "reason"}],
    "model", "human_region" (the box source), "output_dir".

    Raises:
      ConfigError naming the flag, before any image is read: no images, two with one
      id, not exactly one model or one box source, a model or box file that cannot be
      read, no --output_dir.
    """
    if not config.output_dir:
        raise ConfigError("--output_dir is required")
    paths = list_images(config.images)
    regions = _Regions(config)
    segment, class_names, info, model_path = load_segmenter(config)
    gfile = tf.io.gfile
    gfile.makedirs(config.output_dir)
    run_dir.write_text_atomic(os.path.join(config.output_dir, LEGEND_FILE),
                              json.dumps(_legend(class_names, info, model_path),
                                         indent=1) + "\n")
    written, skipped = [], []
    progress = evaluation.ProgressBar(len(paths), enabled=bool(config.verbose),
                                      label="predict")
    for done, path in enumerate(paths, start=1):
        image_id = image_id_of(path)
        try:
            image = read_image(path)
            height, width = image.shape[:2]
            boxes = regions.boxes(image_id, height, width)
        except boxes_lib.BadInputError as e:
            logging.warning("skipping %s: %s", path, e)
            skipped.append({"image": path, "kind": BAD_FILE, "reason": str(e)})
            progress.update(done)
            continue
        if len(boxes) == 0:
            skipped.append({"image": path, "kind": NO_BOX,
                            "reason": f"{NO_BOX} ({regions.source})"})
            progress.update(done)
            continue
        out = segment(tf.constant(image[None]), tf.constant(boxes[None], tf.float32))
        labels = out["labels"].numpy()[0]
        label_path = os.path.join(config.output_dir, image_id + LABEL_SUFFIX)
        visualize.write_file(label_path, visualize.label_png_bytes(labels, class_names))
        overlay_path = None
        if config.overlays:
            overlay_path = visualize.write_file(
                os.path.join(config.output_dir, image_id + OVERLAY_SUFFIX),
                visualize.overlay_jpeg_bytes(image, labels, class_names, boxes=boxes))
        written.append({"id": image_id, "image": path, "label_map": label_path,
                        "overlay": overlay_path, "boxes": boxes.tolist()})
        progress.update(done)
    progress.close(len(paths))
    no_box = sum(s["kind"] == NO_BOX for s in skipped)
    summary = {
        "counts": {"images": len(paths), "written": len(written), "skipped": len(skipped),
                   "skipped_no_person_box": no_box,
                   "skipped_bad_file": len(skipped) - no_box},
        "written": written,
        "skipped": skipped,
        "model": model_path,
        "human_region": regions.source,
        "output_dir": config.output_dir,
    }
    run_dir.write_text_atomic(os.path.join(config.output_dir, SUMMARY_FILE),
                              run_dir.to_json(summary, indent=1) + "\n")
    return summary


def describe(summary: dict) -> str:
    """The summary line predict.py ends with."""
    counts = summary["counts"]
    return (f"wrote {counts['written']} label maps of {counts['images']} images to "
            f"{summary['output_dir']}; skipped {counts['skipped']} (no person box: "
            f"{counts['skipped_no_person_box']}, bad file: {counts['skipped_bad_file']})")
