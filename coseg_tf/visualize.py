"""Pictures of part segmentations, like the paper's Figure 3: image | ground truth | predictions.

    save_overlay(image, labels, prediction, class_names, "out.png")
    compare_overlays(image, labels, {"(a)": pa, "(b)": pb, "(c)": pc}, class_names, "cmp.png")
    compare_overlay_grid([(image, labels, {"(a)": pa, ...}), ...], class_names, "fig3.png")

Label maps are drawn in a fixed palette keyed by class NAME, so "head" has the same
colour in every scheme and every picture: background black, "other" (human region no
part covers) grey, pixels labeled 255 (ignored by the metrics) white. A legend of the
class names (and "ignore" when such pixels show) runs under the panels. With `blend`
> 0 the colours are laid over the image instead, background transparent.

Drawing uses matplotlib's object API with the Agg canvas (no screen, no pyplot global
state); the PNG is written through `tf.io.gfile` (temporary file, then rename), so
`gs://` paths work.
"""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np

from pipelines import schema

IGNORE_LABEL = schema.IGNORE_LABEL
BACKGROUND_COLOR = (0, 0, 0)
OTHER_COLOR = (128, 128, 128)
IGNORE_COLOR = (255, 255, 255)

# Fixed colours by class name (all schemes of pipelines/schema.py).
PALETTE = {
    "background": BACKGROUND_COLOR,
    schema.OTHER: OTHER_COLOR,
    "head": (230, 25, 75),         # red
    "body": (60, 180, 75),         # green
    "torso": (60, 180, 75),
    "hand": (255, 225, 25),        # yellow
    "upper_arms": (255, 225, 25),
    "lower_arms": (245, 130, 48),  # orange
    "leg": (0, 130, 200),          # blue
    "upper_legs": (0, 130, 200),
    "lower_legs": (145, 30, 180),  # purple
}
# Colours of class names the palette does not know, in turn.
EXTRA_COLORS = ((70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
                (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128))

# Side of a panel in pixels: the image's longer side, kept in [MIN, MAX].
MIN_PANEL_PIXELS = 240
MAX_PANEL_PIXELS = 480
DPI = 100


def class_colors(class_names: Sequence[str]) -> np.ndarray:
    """uint8 [C, 3]: the colour of each class, by name (unknown names take EXTRA_COLORS)."""
    colors, extra = [], 0
    for name in class_names:
        if name in PALETTE:
            colors.append(PALETTE[name])
        else:
            colors.append(EXTRA_COLORS[extra % len(EXTRA_COLORS)])
            extra += 1
    return np.asarray(colors, np.uint8).reshape(-1, 3)


def colorize(labels, class_names: Sequence[str], image=None, blend: float = 0.0) -> np.ndarray:
    """uint8 [H, W, 3] picture of a label map.

    Args:
      labels: int [H, W] class ids; IGNORE_LABEL is drawn white.
      class_names: names of the classes, id order.
      image: the image [H, W, 3] (needed when blend > 0).
      blend: 0 draws solid colours on black; in (0, 1] lays the colours with this
        opacity over the image, background transparent.

    Raises:
      ValueError for a label that is neither a class id nor IGNORE_LABEL.
    """
    labels = np.asarray(labels)
    colors = class_colors(class_names)
    bad = (labels != IGNORE_LABEL) & ((labels < 0) | (labels >= len(class_names)))
    if bad.any():
        raise ValueError(f"colorize: labels {sorted(set(labels[bad].tolist()))[:10]} are "
                         f"not class ids of {list(class_names)} nor {IGNORE_LABEL}")
    out = np.zeros(labels.shape + (3,), np.uint8)
    known = labels != IGNORE_LABEL
    out[known] = colors[labels[known]]
    out[~known] = IGNORE_COLOR
    if blend > 0:
        if image is None:
            raise ValueError("colorize: blend > 0 needs the image")
        base = _as_uint8_image(image).astype(np.float32)
        mixed = (1 - blend) * base + blend * out.astype(np.float32)
        paint = labels != 0
        out = np.where(paint[..., None], mixed, base).round().astype(np.uint8)
    return out


def _as_uint8_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    return np.clip(np.round(image.astype(np.float32)), 0, 255).astype(np.uint8)


def _as_label_map(labels, name, shape) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[0] == 1:
        labels = labels[0]
    if labels.shape != tuple(shape):
        raise ValueError(f"{name} is {labels.shape}, the image is {tuple(shape)}")
    return labels.astype(np.int64)


def _panel_inches(height, width):
    side = min(max(max(height, width), MIN_PANEL_PIXELS), MAX_PANEL_PIXELS)
    scale = side / max(height, width)
    return width * scale / DPI, height * scale / DPI


def compare_overlay_grid(examples, class_names: Sequence[str], path: str, *,
                         titles: Sequence[str] | None = None, blend: float = 0.0) -> str:
    """One row per image: image | ground truth | each model's prediction; a legend below.

    Args:
      examples: [(image [H, W, 3] 0..255, labels [H, W], {column name: prediction
        [H, W]}), ...]; every row must name the same columns, in the same order.
      class_names: names of the classes, id order.
      path: the PNG to write (local or gs://...).
      titles: optional row titles (e.g. image ids), put on the image panel.
      blend: as in `colorize`.

    Returns:
      `path`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not examples:
        raise ValueError("compare_overlay_grid: no example to draw")
    columns = list(examples[0][2])
    rows = []
    for r, (image, labels, predictions) in enumerate(examples):
        if list(predictions) != columns:
            raise ValueError(f"compare_overlay_grid: row {r} has the columns "
                             f"{list(predictions)}, the first row {columns}")
        image = _as_uint8_image(image)
        labels = _as_label_map(labels, f"row {r}: labels", image.shape[:2])
        preds = [_as_label_map(p, f"row {r}: prediction {n!r}", image.shape[:2])
                 for n, p in predictions.items()]
        rows.append((image, labels, preds))

    widths, heights = zip(*[_panel_inches(*image.shape[:2]) for image, _, _ in rows])
    panel_w = max(widths)
    ncols = 2 + len(columns)
    legend_h = 0.45
    fig = Figure(figsize=(ncols * panel_w + 0.2, sum(heights) + 0.35 * len(rows) + legend_h),
                 dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), ncols, squeeze=False,
                        gridspec_kw={"height_ratios": list(heights)})
    shows_ignore = False
    for r, (image, labels, preds) in enumerate(rows):
        shows_ignore |= bool((labels == IGNORE_LABEL).any())
        panels = [image, colorize(labels, class_names, image, blend)]
        panels += [colorize(p, class_names, image, blend) for p in preds]
        names = ["image", "ground truth"] + columns
        if titles is not None:
            names[0] = str(titles[r])
        for c, (panel, name) in enumerate(zip(panels, names)):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            # A thin frame, no ticks: white "ignore" pixels stay visible at the edges.
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_linewidth(0.5)
            if r == 0 or (c == 0 and titles is not None):
                ax.set_title(name, fontsize=10)

    colors = class_colors(class_names) / 255.0
    # Blended pictures show the image where the background is: no background entry.
    handles = [Patch(facecolor=colors[i], edgecolor="black", linewidth=0.5, label=name)
               for i, name in enumerate(class_names) if not (blend > 0 and i == 0)]
    if shows_ignore:
        handles.append(Patch(facecolor=np.asarray(IGNORE_COLOR) / 255.0, edgecolor="black",
                             linewidth=0.5, label="ignore"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles),
               fontsize=9, frameon=False)

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    _write_bytes(path, buffer.getvalue())
    return path


def compare_overlays(image, labels, predictions: Mapping, class_names: Sequence[str],
                     path: str, *, title: str | None = None, blend: float = 0.0) -> str:
    """image | ground truth | one column per model, e.g. {"(a)": pa, "(b)": pb, "(c)": pc}.

    Args:
      image: [H, W, 3] RGB 0..255 (uint8 or float; a leading batch of 1 is dropped).
      labels: int [H, W] ground truth (255 = ignore).
      predictions: {column name: int [H, W] predicted labels}, in column order.
      class_names: names of the classes, id order.
      path: the PNG to write.
      title: optional title of the image panel (e.g. the image id).
      blend: as in `colorize`.
    """
    return compare_overlay_grid([(image, labels, dict(predictions))], class_names, path,
                                titles=None if title is None else [title], blend=blend)


def save_overlay(image, labels, prediction, class_names: Sequence[str], path: str, *,
                 title: str | None = None, blend: float = 0.0) -> str:
    """image | ground truth | prediction, with a legend, written as a PNG at `path`."""
    return compare_overlays(image, labels, {"prediction": prediction}, class_names, path,
                            title=title, blend=blend)


def _write_bytes(path: str, data: bytes):
    import tensorflow as tf  # only to write through gfile

    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


# === Label maps as files (predict.py) ===

def label_png_bytes(labels, class_names: Sequence[str]) -> bytes:
    """A palette PNG of a label map: pixel value = class id, palette = `class_colors`.

    Any image viewer shows the colours; a program reads the class ids (PIL:
    `np.asarray(Image.open(path))`), as in Pascal-Person-Part's and LIP's label PNGs.

    Raises ValueError for a label outside 0..len(class_names) - 1.
    """
    from PIL import Image

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [H, W], got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"labels {labels.min()}..{labels.max()} are not class ids of "
                         f"{list(class_names)}")
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    palette = class_colors(class_names).reshape(-1)
    im.putpalette(palette.tolist() + [0] * (768 - palette.size))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def overlay_jpeg_bytes(image, labels, class_names: Sequence[str], *, boxes=None,
                       blend: float = 0.5, quality: int = 90) -> bytes:
    """A JPEG of the image with the classes laid over it (`colorize` with `blend`) and
    the human boxes (normalized ymin, xmin, ymax, xmax) outlined in white."""
    from PIL import Image, ImageDraw

    image = _as_uint8_image(image)
    labels = _as_label_map(labels, "labels", image.shape[:2])
    im = Image.fromarray(colorize(labels, class_names, image=image, blend=blend))
    if boxes is not None and len(boxes):
        draw = ImageDraw.Draw(im)
        height, width = labels.shape
        for ymin, xmin, ymax, xmax in np.asarray(boxes, np.float64).reshape(-1, 4):
            draw.rectangle([xmin * width, ymin * height, max(xmax * width - 1, 0),
                            max(ymax * height - 1, 0)], outline=IGNORE_COLOR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_file(path: str, data: bytes) -> str:
    """Writes `data` at `path` through `tf.io.gfile`, atomically (temporary file, rename)."""
    _write_bytes(path, data)
    return path
