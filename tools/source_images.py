"""What every source of the converter shares: the image, the outcome of one id.

Pure Python + NumPy + PIL (no TensorFlow): the converter's worker processes import it.
`tools/pascal_part.py`, `tools/label_png.py` and `tools/boxes_only.py` read one image
each with these pieces; `tools/make_tfrecords.py` writes what they return.

The image of a record is a JPEG: the format (`pipelines/schema.py` image/encoded) holds
JPEG bytes and the pipeline decodes them with `tf.io.decode_jpeg` after checking the
JPEG marker. Every source finds its image by id (`find_image`: ID.jpg, ID.jpeg, any
case); an image in another format (a PNG photo, say) is bad input naming the file, not
re-encoded: what the converter accepts is exactly what the pipeline decodes.
(`predict.py`, which reads no records, takes PNG photos too.)

Orientation: annotations refer to the upright image a viewer shows. A JPEG whose EXIF
Orientation tag is 2..8 is turned upright and re-encoded (`read_jpeg`); the maps of a
source must have the upright size (`size_mismatch`).
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin

from pipelines import boxes as boxes_lib
from pipelines import schema
from pipelines.boxes import BadInputError  # re-exported: every source raises it

NO_PERSON = "no person"
BAD_INPUT = "bad input"

# 25 megapixels (e.g. 5000 x 5000): ~0.6 GB to convert one image, several GB as float
# crops in the training pipeline. 0 = no limit.
DEFAULT_MAX_PIXELS = 25_000_000

# EXIF Orientation (tag 0x0112): how the stored pixels are turned for display.
EXIF_ORIENTATION = 0x0112
ORIENTATIONS = {
    1: "upright", 2: "mirrored left-right", 3: "rotated 180°",
    4: "mirrored top-bottom", 5: "mirrored along the main diagonal (transposed)",
    6: "rotated 90° clockwise", 7: "mirrored along the anti-diagonal (transversed)",
    8: "rotated 90° counter-clockwise",
}


@dataclasses.dataclass(frozen=True)
class Converted:
    """Everything `pipelines.records.make_example` needs for one image.

    Args:
      image_id: the image id.
      jpeg: the JPEG bytes of the upright image (the file's own bytes when its EXIF
        orientation is 1 or absent; else the upright pixels re-encoded).
      height, width: the size of the upright image.
      boxes: float32 (N, 4) normalized (ymin, xmin, ymax, xmax).
      person_mask: uint8 (height, width), 0 = no person, k = k-th person; None for
        a box-only record.
      parts_fine: uint8 (height, width), 0 = no part, i = the vocabulary's i-th name;
        None for a box-only record.
      num_persons: the number of persons the source names (person objects of a
        `.mat` file, connected regions of a label map, boxes of a box-only source).
      image_path: the JPEG file (for messages about it).
      orientation: the file's EXIF orientation that was applied (1 = none).
    """

    image_id: str
    jpeg: bytes
    height: int
    width: int
    boxes: np.ndarray
    person_mask: Optional[np.ndarray]
    parts_fine: Optional[np.ndarray]
    num_persons: int
    image_path: str = ""
    orientation: int = 1


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An image the converter does not write.

    Args:
      image_id: the image id.
      kind: NO_PERSON or BAD_INPUT.
      reason: "no person" (or what shows it: "no person box ..."), or the message
        naming the bad file and its problem.
    """

    image_id: str
    kind: str
    reason: str



# === Boxes ===

def convert_or_skip(read_example, image_id: str, **kwargs):
    """`read_example(image_id, **kwargs)`, with bad input returned as
    `Skipped(kind=BAD_INPUT)`.

    Each source's worker function (`functools.partial(convert_or_skip, read_example)`,
    picklable for the converter's process pool): it never raises for bad input, so an
    ordered `Pool.imap` over ids keeps going and the parent decides (skip or fail).
    """
    try:
        return read_example(image_id, **kwargs)
    except BadInputError as e:
        return Skipped(image_id, BAD_INPUT, str(e))


def mask_box(mask: np.ndarray) -> np.ndarray:
    """float32 (4,) tight normalized box (ymin, xmin, ymax, xmax) of a non-empty mask.

    Pixel i covers [i, i + 1): (rmin / H, cmin / W, (rmax + 1) / H, (cmax + 1) / W).
    """
    height, width = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("the mask is empty: it has no box")
    return np.array([rows[0] / height, cols[0] / width,
                     (rows[-1] + 1) / height, (cols[-1] + 1) / width], np.float32)



# === JPEG ===

def _printable(path: str) -> str:
    """`path`, or the repr of its bytes when it holds undecodable (surrogate) bytes."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return repr(os.fsencode(path))


def check_size(path: str, max_pixels: int) -> None:
    """BadInputError when the image at `path` has more than `max_pixels` pixels.

    Reads the header only. An unreadable file passes: `read_jpeg` reports it.
    """
    if not max_pixels or not os.path.isfile(path):
        return
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Image.DecompressionBombError as e:  # PIL's own limit, far above ours
        raise BadInputError(f"{path}: image too large to open ({e})") from None
    except Exception:  # not an image: read_jpeg says what is wrong
        return
    if width * height > max_pixels:
        raise BadInputError(
            f"{path}: image is {width}x{height} (WxH), {width * height / 1e6:.1f} "
            f"megapixels, more than --max_pixels={max_pixels} ({max_pixels / 1e6:g} "
            "megapixels); raise --max_pixels (0 = no limit) to convert it")


def _format_name(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format or "an unknown format"
    except Exception:  # not an image Pillow knows
        return "no image format it knows"


def orientation_of(im) -> int:
    """The EXIF orientation (1..8) of an opened Pillow image; 1 when it has none.

    A value outside 1..8 (0 is common, "unknown") is displayed as 1 by viewers and
    annotation tools, so it is taken as 1.
    """
    try:
        value = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # an unreadable EXIF block: viewers show the stored pixels
        return 1
    return value if isinstance(value, int) and value in ORIENTATIONS else 1


def _upright_jpeg(im) -> bytes:
    """The upright pixels of a JPEG with an EXIF orientation, re-encoded as JPEG.

    The original quantization tables and chroma subsampling are kept, so the image is
    re-encoded at the quality it was saved with (one more generation of JPEG loss; a
    lossless DCT rotation needs jpegtran, which Pillow does not offer). The EXIF block
    is left out (its orientation no longer applies); the ICC profile is kept.
    """
    im.load()
    upright = ImageOps.exif_transpose(im)
    options = {"qtables": im.quantization, "optimize": False}
    subsampling = JpegImagePlugin.get_sampling(im)
    if subsampling != -1:
        options["subsampling"] = subsampling
    if im.info.get("icc_profile"):
        options["icc_profile"] = im.info["icc_profile"]
    buf = io.BytesIO()
    upright.save(buf, format="JPEG", **options)
    return buf.getvalue()


def read_jpeg(path: str):
    """(jpeg_bytes, height, width, orientation) of a JPEG file, as shown upright.

    A JPEG is what starts with the JPEG start-of-image marker (`schema.JPEG_SOI`),
    whatever name Pillow gives it ("MPO" for a camera's multi-picture JPEG). Only the
    header is read, unless the file's EXIF orientation is 2..8: the image is then
    decoded, turned upright and re-encoded (`_upright_jpeg`), since
    `tf.io.decode_jpeg` ignores EXIF and the annotations refer to the upright image.
    Whether TensorFlow decodes the bytes is checked by the converter's parent
    (`pipelines.decode.check_jpeg`), not here: this module does not import TensorFlow.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BadInputError(f"{path}: missing JPEG image") from None
    except OSError as e:
        raise BadInputError(f"{path}: cannot read the JPEG image ({e})") from None
    if not data:
        raise BadInputError(f"{path}: empty file (0 bytes), not a JPEG image")
    if data[:3] != schema.JPEG_SOI:
        raise BadInputError(f"{path}: not a JPEG image (PIL reads it as "
                            f"{_format_name(data)}); a JPEG starts with FF D8 FF")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            orientation = orientation_of(im)
            if orientation != 1:
                data = _upright_jpeg(im)
                if orientation in (5, 6, 7, 8):
                    width, height = height, width
    except Image.DecompressionBombError as e:
        raise BadInputError(f"{path}: image too large to open ({e})") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
        raise BadInputError(
            f"{path}: corrupt or truncated JPEG ({type(e).__name__}: {e})") from None
    return data, height, width, orientation


# === Finding an image ===

JPEG_EXTENSIONS = (".jpg", ".jpeg")
# Photo formats found beside JPEGs: listed so that they are reported, not ignored.
OTHER_IMAGE_EXTENSIONS = (".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def list_image_ids(images_dir: str) -> list:
    """Sorted ids (file stems) of the images in `images_dir`: JPEGs and other photo
    formats (which `find_image` then refuses, named), hidden files left out."""
    ids = set()
    for name in os.listdir(images_dir):
        stem, ext = os.path.splitext(name)
        if (not name.startswith(".") and ext.lower() in JPEG_EXTENSIONS + OTHER_IMAGE_EXTENSIONS
                and os.path.isfile(os.path.join(images_dir, name))):
            ids.add(stem)
    return sorted(ids)


def find_image(images_dir: str, image_id: str) -> str:
    """The JPEG of `image_id` in `images_dir` (ID.jpg or ID.jpeg, any case).

    Raises:
      BadInputError: no JPEG of that id; the message names a file of another format
        when there is one (the record format holds JPEG images).
    """
    others = []
    for ext in JPEG_EXTENSIONS + OTHER_IMAGE_EXTENSIONS:
        for variant in (ext, ext.upper()):
            path = os.path.join(images_dir, image_id + variant)
            if os.path.isfile(path):
                if ext in JPEG_EXTENSIONS:
                    return path
                others.append(path)
    if others:
        raise BadInputError(
            f"{others[0]}: not a JPEG; the records hold JPEG images (what the training "
            "pipeline decodes), so convert it to JPEG first (e.g. with Pillow: "
            "Image.open(p).convert('RGB').save(q, quality=95))")
    raise BadInputError(f"{os.path.join(images_dir, image_id)}.jpg: missing JPEG image")


def size_mismatch(what: str, shape, height: int, width: int, orientation: int) -> str:
    """The message for a map of `shape` on an upright image of height x width."""
    message = (f"{what} is {shape[0]}x{shape[1]} (HxW), but the image is "
               f"{height}x{width}")
    if orientation in (5, 6, 7, 8):
        message += (
            f" as shown upright: its EXIF Orientation tag is {orientation} "
            f"({ORIENTATIONS[orientation]}), the stored pixels are {width}x{height}. "
            "Annotations must refer to the upright image a viewer shows"
            + (" (these have the stored size: drawn on the pixels before the rotation?)"
               if tuple(shape) == (width, height) else ""))
    return message


def file_boxes(image_id: str, height: int, width: int, orientation: int = 1, *,
               voc_annotations_dir=None, coco_boxes=None, coco_size=None, coco_path="",
               coco_listed=True):
    """float32 (N, 4) normalized person boxes of the box file given; None without one.

    Args:
      image_id: the image id (VOC: `voc_annotations_dir/ID.xml`).
      height, width: the upright image's size; orientation: its EXIF tag (messages).
      voc_annotations_dir: read the image's VOC XML there (`pipelines.boxes`).
      coco_boxes: the image's [[x, y, w, h], ...] from a COCO file (read once by the
        converter's parent, `pipelines.boxes.read_coco`).
      coco_size: (height, width) the COCO file gives the image; another size than the
        upright image's is bad input.
      coco_path: the COCO file, for messages.
      coco_listed: False when the COCO instances file does not list the image at all:
        bad input (an image it knows nothing about; detection results list only
        images with detections, and always pass True).

    Raises:
      BadInputError naming the file.
    """
    if not coco_listed:
        raise BadInputError(f"{coco_path}: image {image_id!r} is not among the images of "
                            "this COCO instances file")
    if voc_annotations_dir is not None:
        xml_path = os.path.join(voc_annotations_dir, image_id + ".xml")
        return boxes_lib.voc_person_boxes(xml_path, height, width)
    if coco_boxes is None:
        return None
    if coco_size is not None and tuple(coco_size) != (height, width):
        message = (f"{coco_path or 'the COCO file'}: image {image_id!r} is "
                   f"{coco_size[0]}x{coco_size[1]} (HxW) there, but {height}x{width}")
        if orientation != 1:
            message += (f" as shown upright (EXIF Orientation tag {orientation}, "
                        f"{ORIENTATIONS[orientation]}); COCO boxes must refer to the "
                        "upright image a viewer shows")
        raise BadInputError(message)
    return boxes_lib.coco_boxes(coco_boxes, height, width)
