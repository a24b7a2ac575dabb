"""Drawing primitives of the synthetic dataset (tools/make_synthetic.py).

Shapes are rasterised exactly, on the pixel grid the annotation masks use: pixel
(row r, column c) is the point (x=c, y=r). Each primitive returns a `Raster`: a window
of the canvas (its top-left corner and a bool mask) plus, per pixel of the window,

  shade  in [0, 1]: 0 on the shape's axis or centre, 1 on its outline (for shading a
         limb as a cylinder or a head as a ball);
  tu, tv texture coordinates in pixels in the shape's own frame (along / across a limb),
         so a striped sleeve keeps its stripes when the arm turns.

`Material` turns texture coordinates into colours. Everything is NumPy (and PIL for
polygons); nothing here draws at random: callers pass every number.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage


@dataclasses.dataclass
class Raster:
    """A shape rasterised in a window of the canvas.

    Args:
      y0, x0: the window's top-left pixel on the canvas.
      mask: bool (h, w), the shape's pixels inside the window.
      shade: float32 (h, w), 0 at the shape's centre line, 1 on its outline.
      tu, tv: float32 (h, w), texture coordinates in pixels.
    """

    y0: int
    x0: int
    mask: np.ndarray
    shade: np.ndarray
    tu: np.ndarray
    tv: np.ndarray

    @property
    def window(self):
        h, w = self.mask.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)

    def full(self, height: int, width: int) -> np.ndarray:
        """The bool (height, width) mask of the shape on the whole canvas."""
        out = np.zeros((height, width), bool)
        out[self.window] = self.mask
        return out


def _window(height, width, xmin, ymin, xmax, ymax):
    """Integer window [y0, y1) x [x0, x1) covering the box, clipped; None when empty."""
    x0 = max(int(np.floor(xmin)) - 1, 0)
    y0 = max(int(np.floor(ymin)) - 1, 0)
    x1 = min(int(np.ceil(xmax)) + 2, width)
    y1 = min(int(np.ceil(ymax)) + 2, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return y0, y1, x0, x1


def _grid(y0, y1, x0, x1):
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    return ys, xs


def capsule(height, width, a, b, ra, rb):
    """A limb: the points within r(t) of segment a-b, r tapering from ra (at a) to rb.

    tu runs along the segment from a, tv across it. None when off the canvas.
    """
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    r = max(ra, rb)
    win = _window(height, width, min(a[0], b[0]) - r, min(a[1], b[1]) - r,
                  max(a[0], b[0]) + r, max(a[1], b[1]) + r)
    if win is None:
        return None
    y0, y1, x0, x1 = win
    ys, xs = _grid(*win)
    ab = b - a
    length = float(np.hypot(ab[0], ab[1]))
    if length < 1e-3:
        ab, length = np.array([0.0, 1.0], np.float32), 1e-3
    d = ab / length
    px, py = xs - a[0], ys - a[1]
    along = px * d[0] + py * d[1]
    across = -px * d[1] + py * d[0]
    t = np.clip(along / length, 0.0, 1.0)
    dist = np.hypot(px - t * ab[0], py - t * ab[1])
    radius = np.maximum(ra + (rb - ra) * t, 0.5)
    mask = dist <= radius
    if not mask.any():
        return None
    shade = np.clip(dist / radius, 0.0, 1.0).astype(np.float32)
    return Raster(y0, x0, mask, shade, along.astype(np.float32), across.astype(np.float32))


def ellipse(height, width, center, rx, ry, angle=0.0, keep=None):
    """A filled ellipse of semi-axes rx (along `angle`) and ry, rotated by `angle` (rad).

    keep: optional function (un, vn) -> bool array of the normalized coordinates
      (un = u / rx, vn = -v / ry, vn pointing "up" of the ellipse) selecting a sub-region
      (hair is a head ellipse above a hairline). None when off the canvas or empty.
    """
    cx, cy = float(center[0]), float(center[1])
    r = max(rx, ry)
    win = _window(height, width, cx - r, cy - r, cx + r, cy + r)
    if win is None:
        return None
    y0, y1, x0, x1 = win
    ys, xs = _grid(*win)
    c, s = np.cos(angle), np.sin(angle)
    px, py = xs - cx, ys - cy
    u = px * c + py * s
    v = -px * s + py * c
    un = u / rx
    vn = -v / ry
    rn = np.sqrt(un * un + vn * vn)
    mask = rn <= 1.0
    if keep is not None:
        mask &= keep(un, vn)
    if not mask.any():
        return None
    return Raster(y0, x0, mask, np.clip(rn, 0.0, 1.0).astype(np.float32),
                  u.astype(np.float32), v.astype(np.float32))


def polygon(height, width, points, origin=(0.0, 0.0), angle=0.0):
    """A filled polygon (PIL's rasteriser: a pixel whose centre is inside, or on the
    outline). Texture coordinates are taken in the frame at `origin` rotated by `angle`;
    shade is 1 on the outline falling to 0 at the pixels farthest inside.
    """
    pts = np.asarray(points, np.float64)
    win = _window(height, width, pts[:, 0].min(), pts[:, 1].min(),
                  pts[:, 0].max(), pts[:, 1].max())
    if win is None:
        return None
    y0, y1, x0, x1 = win
    img = Image.new("L", (x1 - x0, y1 - y0), 0)
    local = [(float(x - x0), float(y - y0)) for x, y in np.round(pts, 2)]
    ImageDraw.Draw(img).polygon(local, fill=1)
    mask = np.asarray(img, dtype=np.uint8).astype(bool)
    if not mask.any():
        return None
    inside = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    shade = 1.0 - inside / max(float(inside.max()), 1.0)
    ys, xs = _grid(*win)
    c, s = np.cos(angle), np.sin(angle)
    px, py = xs - origin[0], ys - origin[1]
    tu = px * c + py * s
    tv = -px * s + py * c
    return Raster(y0, x0, mask, shade.astype(np.float32), tu.astype(np.float32),
                  tv.astype(np.float32))


def union(rasters):
    """One Raster covering every raster of the list (later ones win where they
    overlap); None when the list holds no raster."""
    rasters = [r for r in rasters if r is not None]
    if not rasters:
        return None
    if len(rasters) == 1:
        return rasters[0]
    y0 = min(r.y0 for r in rasters)
    x0 = min(r.x0 for r in rasters)
    y1 = max(r.y0 + r.mask.shape[0] for r in rasters)
    x1 = max(r.x0 + r.mask.shape[1] for r in rasters)
    shape = (y1 - y0, x1 - x0)
    out = Raster(y0, x0, np.zeros(shape, bool), np.zeros(shape, np.float32),
                 np.zeros(shape, np.float32), np.zeros(shape, np.float32))
    for r in rasters:
        ys = slice(r.y0 - y0, r.y0 - y0 + r.mask.shape[0])
        xs = slice(r.x0 - x0, r.x0 - x0 + r.mask.shape[1])
        m = r.mask
        out.mask[ys, xs] |= m
        out.shade[ys, xs][m] = r.shade[m]
        out.tu[ys, xs][m] = r.tu[m]
        out.tv[ys, xs][m] = r.tv[m]
    return out


def value_noise(rng, height, width, cells):
    """Smooth noise in [0, 1], float32 (height, width): a random grid of about
    `cells` x `cells` values, upsampled bicubically."""
    gh = max(2, int(round(cells * height / max(height, width))) + 1)
    gw = max(2, int(round(cells * width / max(height, width))) + 1)
    grid = (rng.random((gh, gw)) * 255.0).astype(np.uint8)
    img = Image.fromarray(grid, "L").resize((width, height), Image.BICUBIC)
    return np.asarray(img, np.float32) / 255.0


PATTERNS = ("flat", "stripes", "checker", "dots", "mottled")


@dataclasses.dataclass
class Material:
    """The look of a surface: colours, a pattern in texture coordinates, grain, shading.

    Args:
      base: RGB (0..255) of the surface.
      alt: RGB of the pattern's second colour.
      pattern: one of PATTERNS.
      period: the pattern's period in pixels.
      angle: the pattern's direction in the texture frame (rad).
      grain: amplitude (RGB levels) of the per-image noise field added on top.
      shade_k: how much darker the outline is than the centre line (0 = flat).
    """

    base: np.ndarray
    alt: np.ndarray
    pattern: str = "flat"
    period: float = 6.0
    angle: float = 0.0
    grain: float = 8.0
    shade_k: float = 0.3

    def colors(self, tu, tv, shade, noise):
        """float32 (n, 3) colours at n pixels (1-D texture coords, shade, noise)."""
        base = np.asarray(self.base, np.float32)
        alt = np.asarray(self.alt, np.float32)
        if self.pattern == "flat":
            w = np.zeros_like(tu)
        else:
            c, s = np.cos(self.angle), np.sin(self.angle)
            a = tu * c + tv * s
            b = -tu * s + tv * c
            p = max(self.period, 2.0)
            if self.pattern == "stripes":
                w = (np.sin(2 * np.pi * a / p) > 0).astype(np.float32)
            elif self.pattern == "checker":
                w = ((np.floor(a / p) + np.floor(b / p)) % 2).astype(np.float32)
            elif self.pattern == "dots":
                da = a / p - np.floor(a / p) - 0.5
                db = b / p - np.floor(b / p) - 0.5
                w = (da * da + db * db < 0.09).astype(np.float32)
            else:  # mottled: the noise field mixes the two colours
                w = np.clip((noise - 0.5) * 2.5 + 0.5, 0.0, 1.0)
        out = base[None, :] * (1.0 - w[:, None]) + alt[None, :] * w[:, None]
        out = out * (1.0 - self.shade_k * shade * shade)[:, None]
        out = out + (self.grain * (noise - 0.5))[:, None]
        return out
