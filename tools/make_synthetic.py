r"""The embedded default dataset of coseg_tf: synthetic scenes in the real source formats.

The generator writes what a user of the real datasets has on disk, so that the one
converter (tools/make_tfrecords.py) serves real and synthetic data alike:

  OUTPUT_DIR/
    JPEGImages/syn_000000.jpg        the image (JPEG, RGB)
    Annotations_Part/syn_000000.mat  Pascal-Part struct `anno` (MATLAB v5, compressed):
                                     anno.imname, anno.objects(1, N) with class,
                                     class_ind (uint8 1x1, VOC numbering), mask (uint8
                                     {0,1}, H x W) and parts (1, K) of part_name + mask,
                                     or (0, 0) for an object without parts
    Annotations/syn_000000.xml       VOC XML: every object (persons and others) with a
                                     1-based inclusive <bndbox> (xmin, ymin, xmax, ymax),
                                     in the same order as the .mat objects
    ImageSets/train.txt, val.txt     image ids, one a line
    synthetic_manifest.json          the generator's settings and counts
    README.txt                       this layout, in words

What an image holds:
- One to three articulated human figures, built from a kinematic skeleton with random
  joint angles (standing, walking, arms raised, waving, hands on hips, reaching,
  sitting, and at high difficulty free poses), random yaw (front, three-quarter,
  profile, back), scale and position. Figures may leave the frame and occlude one
  another. Parts are the real Pascal-Part person part names (`pipelines.schema`):
  head, hair, leye/reye, lear/rear, lebrow/rebrow, nose, mouth, neck, torso,
  l/r upper and lower arms, hands, upper and lower legs and feet ("l" is the
  person's own left: image right in a frontal view). Small face parts are drawn and
  labelled only where the head is big enough to show them.
- Each part mask is the part's full shape (parts overlap, as in the real files); the
  parts are listed in painting order, a later part covering an earlier one, so
  painting them in file order gives exactly what the image shows. Far limbs of a
  profile figure come before the torso.
- The person mask of a figure is the union of its parts, a ragged one-pixel fringe
  and sometimes a bag, so some person pixels belong to no part (as in the real data).
  Every pixel belongs to the front-most object: person masks are disjoint, and masks
  and parts of occluded figures (and objects) are clipped to what is visible.
- Non-person objects with their VOC class_ind: dog (12) and cat (8) with parts, car
  (7) with parts, bottle (5), tvmonitor (20) and pottedplant (16) with parts, chair (9)
  without parts ((0, 0), as in the real files).
- Appearance varies across figures and images: skin tone, hair colour and style,
  clothing colours and patterns (stripes, checks, dots, mottled), sleeve and trouser
  length, shading and lighting. Colour alone does not identify a part; shape and
  context do. Cluttered backgrounds (gradients, floors, patterned shapes, limb- and
  head-like distractors in the figures' own colours), mild blur, noise and JPEG.

How much like real persons the figures are is printed after every run and kept in the
manifest (`person_statistics`): the share of its box that a person's mask fills (real
Pascal-Part persons in ../shared/fixtures: 56%; here ~48%), the box size in pixels and
in cells of the network's stride-8 grid, and the share of figures with all four part
groups (head, body, hand, leg). Version 2 of the generator (issue 12) brought the fill
from 44% to that level, with figures as real photographs show them more often than
version 1 did: a close-up (legs leaving the frame) for 25% + 20% x difficulty of the
figures (was 8% + 12%), standing arms nearer the body (2-14 degrees from vertical, was
3-22), a profile walk's stride 8-24 degrees a leg (was 15-32), clothed limbs 0-30%
thicker (was -10-+20%), and overlapping figures side by side rather than on top of each
other (offset 0.3-0.7 of a figure's width, was 0.15-0.6).

--difficulty in [0, 1] scales, linearly, the amount of clutter and distractors, the
probability that figures overlap and that objects stand in front of them, the spread
of poses (and free poses), of yaw (profile and back views), of appearance (patterns,
colour casts, camouflage colours in the background) and the blur/noise/JPEG strength.
Its default, DEFAULT_DIFFICULTY = 0.5, is fixed: it was set before any experiment and
must not be tuned to favour a method.

Determinism: image i is drawn from numpy's Generator seeded with (seed, i), so the
same flags give byte-identical files, and the first k images do not depend on
--num_images. --num_workers changes only the speed.

Usage:
  coseg-make-synthetic --output_dir=data/synthetic_src --num_images=300
  python -m tools.make_synthetic --output_dir=... --image_size=160,200 --difficulty=0.5
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import multiprocessing
import os
import time

import numpy as np
import scipy.io
from PIL import Image, ImageFilter
from scipy import ndimage

from pipelines import schema
from tools import _synthetic_draw as draw

GENERATOR_VERSION = 2
DEFAULT_NUM_IMAGES = 300
DEFAULT_IMAGE_SIZE = 160
DEFAULT_SEED = 0
DEFAULT_DIFFICULTY = 0.5  # fixed before any experiment; see the module docstring
DEFAULT_VAL_FRACTION = 0.3

ID_FORMAT = "syn_{:06d}"
MAX_IMAGES = 1_000_000
MIN_SIDE, MAX_SIDE = 32, 4096
MANIFEST_NAME = "synthetic_manifest.json"
README_NAME = "README.txt"
IMAGES_DIR, PARTS_DIR, VOC_DIR, SETS_DIR = (
    "JPEGImages", "Annotations_Part", "Annotations", "ImageSets")

# VOC class numbering (class_ind of the Pascal-Part files).
VOC_CLASS_IND = {
    "aeroplane": 1, "bicycle": 2, "bird": 3, "boat": 4, "bottle": 5, "bus": 6, "car": 7,
    "cat": 8, "chair": 9, "cow": 10, "table": 11, "dog": 12, "horse": 13,
    "motorbike": 14, "person": 15, "pottedplant": 16, "sheep": 17, "sofa": 18,
    "train": 19, "tvmonitor": 20,
}

# The fixed header text of the .mat files (scipy writes the current time otherwise,
# which would make the bytes differ from run to run).
_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: coseg_tf make_synthetic"

_PART_DTYPE = [("part_name", "O"), ("mask", "O")]
_OBJECT_DTYPE = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]

_HEAD_GROUP = ("head", "lear", "rear", "leye", "reye", "lebrow", "rebrow", "mouth", "hair",
               "nose")


# === Scene description ===

@dataclasses.dataclass
class Layer:
    """One painted shape of an object.

    Args:
      name: the part name written to the .mat, or None for object pixels that belong
        to no part (a person's fringe or bag, a chair, a monitor's frame).
      raster: the shape (`_synthetic_draw.Raster`).
      material: how it looks (`_synthetic_draw.Material`).
    """

    name: str | None
    raster: draw.Raster
    material: draw.Material


@dataclasses.dataclass
class Entity:
    """An object of the scene: a person or another VOC object.

    Args:
      cls: the class name ("person", "dog", ...).
      layers: its shapes in painting order (later over earlier).
      depth: larger is nearer the camera.
      pose: the VOC <pose> text.
      light: (gain, direction x, direction y, centre x, centre y, size) of a linear
        lighting ramp over the object.
    """

    cls: str
    layers: list
    depth: float
    pose: str = "Unspecified"
    light: tuple = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def full_mask(self, height, width):
        out = np.zeros((height, width), bool)
        for layer in self.layers:
            out[layer.raster.window] |= layer.raster.mask
        return out


def _rot(v, angle):
    """v rotated by `angle` (rad) on the image plane."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([v[0] * c - v[1] * s, v[0] * s + v[1] * c])


def _limb_dir(angle_deg, out_sign, frame_angle):
    """Unit vector `angle_deg` from straight down, toward image side `out_sign`,
    in a frame rotated by `frame_angle`."""
    a = math.radians(angle_deg)
    return _rot((out_sign * math.sin(a), math.cos(a)), frame_angle)


def _angle_of(v):
    return math.atan2(v[1], v[0])


# === Colours and materials ===

def _hsv(h, s, v):
    """RGB 0..255 of hue h (turns), saturation s, value v in [0, 1]."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb) * 255.0


def _random_color(rng, d):
    """Any colour: hue uniform, saturation and value over a range that grows with d."""
    return _hsv(rng.random(), rng.uniform(0.05, 0.5 + 0.5 * d),
                rng.uniform(0.25 - 0.15 * d, 0.8 + 0.2 * d))


def _skin_color(rng, d):
    t = rng.random()
    dark, light = np.array([72.0, 46.0, 32.0]), np.array([240.0, 200.0, 175.0])
    c = dark * (1 - t) + light * t
    return np.clip(c * rng.uniform(0.92, 1.08) + rng.normal(0, 6 + 10 * d, 3), 0, 255)


_HAIR_COLORS = np.array([[20, 16, 14], [55, 35, 22], [100, 65, 35], [190, 160, 100],
                         [140, 60, 30], [150, 150, 150], [230, 225, 215]], float)


def _hair_color(rng, d):
    if rng.random() < 0.15 * d:  # dyed
        return _random_color(rng, 1.0)
    c = _HAIR_COLORS[rng.integers(len(_HAIR_COLORS))]
    return np.clip(c * rng.uniform(0.8, 1.2) + rng.normal(0, 8, 3), 0, 255)


def _material(rng, d, base, patterned_p=None, shade_k=None):
    """A surface of colour `base`: flat or patterned (more often with difficulty)."""
    base = np.asarray(base, float)
    if patterned_p is None:
        patterned_p = 0.2 + 0.5 * d
    pattern = "flat"
    if rng.random() < patterned_p:
        pattern = draw.PATTERNS[1 + rng.integers(len(draw.PATTERNS) - 1)]
    if rng.random() < 0.5:
        alt = _random_color(rng, d)
    else:
        alt = np.clip(base * rng.uniform(0.4, 1.6), 0, 255)
    return draw.Material(base=base, alt=alt, pattern=pattern, period=rng.uniform(2.5, 9.0),
                         angle=rng.uniform(0, math.pi), grain=rng.uniform(4, 10 + 20 * d),
                         shade_k=rng.uniform(0.1, 0.45) if shade_k is None else shade_k)


def _flat(rng, base, shade_k=0.2, grain=6.0):
    return draw.Material(base=np.asarray(base, float), alt=np.asarray(base, float),
                         pattern="flat", grain=grain, shade_k=shade_k)


def _person_look(rng, d):
    """Materials of one figure, by role."""
    skin_rgb = _skin_color(rng, d)
    hair_rgb = _hair_color(rng, d)
    top_rgb = _random_color(rng, d)
    bottom_rgb = top_rgb if rng.random() < 0.12 else _random_color(rng, d)
    look = {
        "skin": draw.Material(base=skin_rgb, alt=skin_rgb * 0.85, pattern="mottled",
                              grain=rng.uniform(3, 8), shade_k=rng.uniform(0.15, 0.4)),
        "hair": _material(rng, d, hair_rgb, patterned_p=0.15 * d),
        "top": _material(rng, d, top_rgb),
        "bottom": _material(rng, d, bottom_rgb),
        "shoes": _flat(rng, _random_color(rng, d) * rng.uniform(0.3, 1.0)),
        "eye": _flat(rng, np.clip(rng.normal(35, 12, 3), 0, 255), shade_k=0.0, grain=4),
        "mouth": _flat(rng, np.clip(skin_rgb * [0.75, 0.45, 0.45] + rng.normal(0, 10, 3),
                                    0, 255), shade_k=0.1),
        "nose": _flat(rng, skin_rgb * rng.uniform(0.82, 0.95), shade_k=0.3),
        "brow": _flat(rng, hair_rgb * 0.7, shade_k=0.0),
        "ear": _flat(rng, skin_rgb * rng.uniform(0.88, 1.0), shade_k=0.35),
        "outline": _flat(rng, top_rgb * rng.uniform(0.3, 0.7), shade_k=0.0),
        "bag": _material(rng, d, _random_color(rng, d) * rng.uniform(0.4, 1.0)),
    }
    sleeves = rng.choice(["none", "short", "long"], p=[0.2, 0.35, 0.45])
    trousers = rng.choice(["shorts", "long"], p=[0.25, 0.75])
    # Limb segments by role (upper/lower arm/leg), whichever side.
    look["uarm"] = look["top"] if sleeves != "none" else look["skin"]
    look["larm"] = look["top"] if sleeves == "long" else look["skin"]
    look["uleg"] = look["bottom"]
    look["lleg"] = look["bottom"] if trousers == "long" else look["skin"]
    look["hand"] = look["skin"] if rng.random() > 0.05 + 0.05 * d else look["shoes"]
    look["neck"] = look["skin"] if rng.random() > 0.1 else look["top"]
    return look


# === Human figures ===

_POSES = ("stand", "walk", "arms_up", "wave", "hands_hips", "reach", "sit", "free")
_POSE_EASY = np.array([0.50, 0.30, 0.05, 0.05, 0.03, 0.02, 0.05, 0.0])
_POSE_HARD = np.array([0.20, 0.20, 0.10, 0.10, 0.08, 0.10, 0.12, 0.10])


@dataclasses.dataclass
class _Limb:
    """Angles (degrees) of one arm or leg: upper segment from straight down toward the
    limb's outward (frontal view) or forward (profile) image side, bend of the lower
    segment and its sign, and foreshortening of the two segments."""

    upper: float
    bend: float
    bend_sign: float
    fs_upper: float = 1.0
    fs_lower: float = 1.0


def _sample_pose(rng, d, profile):
    """(pose name, torso lean in degrees, [left arm, right arm], [left leg, right leg])."""
    p = (1 - d) * _POSE_EASY + d * _POSE_HARD
    pose = str(rng.choice(_POSES, p=p / p.sum()))
    u = rng.uniform
    arm_in = 1.0 if profile else -1.0   # elbows bend forward (profile) or inward
    knee = -1.0                          # shins swing back (profile) / inward

    def stand_arm():
        return _Limb(u(-10, 10) if profile else u(2, 14), u(0, 25), arm_in)

    def stand_leg():
        return _Limb(u(-6, 6) if profile else u(1, 10), u(0, 8), knee)

    arms = [stand_arm(), stand_arm()]
    legs = [stand_leg(), stand_leg()]
    lean = rng.normal(0, 3)
    one = int(rng.integers(2))
    if pose == "walk":
        if profile:
            swing = u(8, 24) * (1 if rng.random() < 0.5 else -1)
            legs = [_Limb(swing, u(0, 10), knee), _Limb(-swing, u(10, 40), knee)]
            if swing < 0:  # the back leg bends more
                legs[0].bend, legs[1].bend = legs[1].bend, legs[0].bend
            arms = [_Limb(-0.8 * swing, u(5, 30), arm_in), _Limb(0.8 * swing, u(5, 30), arm_in)]
        else:
            legs = [_Limb(u(0, 8), u(0, 10), knee), _Limb(u(0, 8), u(0, 10), knee)]
            legs[one].fs_lower = u(0.75, 1.0)
            arms = [_Limb(u(3, 18), u(5, 35), arm_in), _Limb(u(3, 18), u(5, 35), arm_in)]
    elif pose == "arms_up":
        arms = [_Limb(u(115, 170), u(0, 35), arm_in), _Limb(u(115, 170), u(0, 35), arm_in)]
        if rng.random() < 0.3:
            arms[one] = stand_arm()
    elif pose == "wave":
        arms[one] = _Limb(u(70, 130), u(40, 110), 1.0)
    elif pose == "hands_hips":
        if profile:
            arms = [_Limb(u(-30, -10), u(60, 100), 1.0), _Limb(u(-30, -10), u(60, 100), 1.0)]
        else:
            arms = [_Limb(u(30, 50), u(85, 115), -1.0), _Limb(u(30, 50), u(85, 115), -1.0)]
    elif pose == "reach":
        arms[one] = _Limb(u(60, 110), u(0, 25), 1.0 if rng.random() < 0.5 else -1.0)
    elif pose == "sit":
        if profile:
            legs = []
            for _ in range(2):
                b = u(70, 100)
                legs.append(_Limb(b, b - u(-15, 15), knee))
            lean = -u(0, 15)
            arms = [_Limb(u(10, 40), u(30, 70), 1.0), _Limb(u(10, 40), u(30, 70), 1.0)]
        else:
            legs = []
            for _ in range(2):
                b = u(3, 20)
                legs.append(_Limb(b, b - u(-5, 10), knee, fs_upper=u(0.25, 0.55)))
            arms = [_Limb(u(10, 45), u(30, 80), -1.0), _Limb(u(10, 45), u(30, 80), -1.0)]
    elif pose == "free":
        arms = [_Limb(u(-30, 180), u(0, 130), 1.0 if rng.random() < 0.5 else -1.0)
                for _ in range(2)]
        legs = [_Limb(u(-20, 60), u(0, 90), knee) for _ in range(2)]
        lean = rng.normal(0, 12)
    noise = 3.0 + 8.0 * d
    for limb in arms + legs:
        limb.upper += rng.normal(0, noise)
        limb.bend = abs(limb.bend + rng.normal(0, noise))
    for limb in arms:
        if rng.random() < 0.1 + 0.25 * d:
            limb.fs_upper = min(limb.fs_upper, u(0.5, 1.0))
        if rng.random() < 0.1 + 0.25 * d:
            limb.fs_lower = min(limb.fs_lower, u(0.5, 1.0))
    return pose, lean, arms, legs


def _sample_yaw(rng, d):
    """Yaw in radians: 0 faces the camera, +pi/2 faces image right, pi shows the back."""
    kind = rng.choice(3, p=[0.7 - 0.3 * d, 0.2 + 0.2 * d, 0.1 + 0.1 * d])
    if kind == 0:
        return rng.uniform(-0.6, 0.6)
    if kind == 1:
        return (math.pi / 2 + rng.uniform(-0.45, 0.45)) * (1 if rng.random() < 0.5 else -1)
    return math.pi + rng.uniform(-0.5, 0.5)


_POINT_KEYS = ("shoulder", "elbow", "wrist", "hand", "hip", "knee", "ankle", "foot_c")


class _Figure:
    """The skeleton and part shapes of one human figure.

    The skeleton is built around the pelvis at the origin, in units of h (one head
    height; a standing figure is about 7.5 h tall); `place` moves it and `layers`
    rasterises its parts.

    Args:
      rng: numpy Generator.
      d: difficulty in [0, 1].
      height_px: height of the figure standing, in pixels.
      look: materials by role (`_person_look`).
    """

    def __init__(self, rng, d, height_px, look):
        self.rng, self.d, self.look = rng, d, look
        h = self.h = height_px / 7.5
        u = rng.uniform
        self.theta = _sample_yaw(rng, d)
        c, s = math.cos(self.theta), math.sin(self.theta)
        self.c, self.s = c, s
        self.profile = abs(c) < 0.5
        self.facing = 1.0 if s > 0 else -1.0
        lat_w = abs(c) + 0.55 * abs(s)
        wf, lf = u(0.88, 1.15), u(0.94, 1.06)
        hs = u(0.92, 1.1) if rng.random() > 0.08 else u(1.15, 1.3)
        self.pose, lean, arms, legs = _sample_pose(rng, d, self.profile)
        if self.pose == "sit" and self.profile:
            lean *= self.facing
        tilt = math.radians(rng.normal(0, 3 + 7 * d))
        t_ang = tilt + math.radians(lean)
        self.up = up = _rot((0.0, -1.0), t_ang)
        self.lat = lat = _rot((1.0, 0.0), t_ang)
        self.t_ang = t_ang
        pelvis = np.zeros(2)
        self.pelvis = pelvis
        # Torso outline (u lateral, v up from the pelvis).
        sw = 0.95 * h * wf * lat_w
        ww = 0.68 * h * wf * lat_w * u(0.9, 1.1)
        hw = 0.8 * h * wf * lat_w * u(0.9, 1.15)
        nw = 0.3 * h * lat_w
        outline = [(-hw, -0.2), (-ww, 1.1), (-sw, 2.05), (-0.8 * sw, 2.4), (-nw, 2.5),
                   (nw, 2.5), (0.8 * sw, 2.4), (sw, 2.05), (ww, 1.1), (hw, -0.2),
                   (0.0, -0.35)]
        self.torso = np.array([pelvis + lat * uu + up * vv * h for uu, vv in outline])
        neck_base = pelvis + up * 2.35 * h
        # Neck and head.
        up_n = _rot(up, math.radians(rng.normal(0, 8)))
        head_ang = t_ang + math.radians(rng.normal(0, 4 + 10 * d))
        up_h = _rot((0.0, -1.0), head_ang)
        self.head_ang = head_ang
        self.head_ry = 0.52 * h * hs
        self.head_rx = h * hs * (0.40 + 0.07 * abs(s))
        neck_top = neck_base + up_n * 0.45 * h
        self.head_c = neck_top + up_h * 0.42 * h * hs
        # The neck reaches just inside the head's outline and a little into the torso
        # (it is painted after both, as in the real files).
        neck_r = 0.19 * h * u(0.9, 1.1)
        self.neck = (neck_base + up * 0.28 * h,
                     self.head_c - up_h * (0.72 * self.head_ry + neck_r), neck_r)
        self.head_yaw = self.theta + rng.normal(0, 0.15)
        # Arms (L = person's left: +1).
        aw, lw = u(1.0, 1.3), u(1.0, 1.25)
        self.arms, self.legs = {}, {}
        for side, sign, limb in (("l", 1.0, arms[0]), ("r", -1.0, arms[1])):
            out = self.facing if self.profile else sign * (1.0 if c >= 0 else -1.0)
            shoulder = pelvis + up * 2.1 * h + lat * (sign * c * (0.95 * h * wf - 0.22 * h))
            du = _limb_dir(limb.upper, out, t_ang)
            elbow = shoulder + du * 1.35 * h * lf * limb.fs_upper
            dl = _limb_dir(limb.upper + limb.bend_sign * limb.bend, out, t_ang)
            wrist = elbow + dl * 1.2 * h * lf * limb.fs_lower
            dh = _rot(dl, math.radians(rng.normal(0, 15)))
            self.arms[side] = dict(shoulder=shoulder, elbow=elbow, wrist=wrist,
                                   hand=wrist + dh * 0.28 * h, hand_dir=dh, lower_dir=dl,
                                   r_upper=(0.22 * h * aw, 0.18 * h * aw),
                                   r_lower=(0.18 * h * aw, 0.14 * h * aw))
        for side, sign, limb in (("l", 1.0, legs[0]), ("r", -1.0, legs[1])):
            out = self.facing if self.profile else sign * (1.0 if c >= 0 else -1.0)
            hip = pelvis + lat * (sign * c * 0.44 * h * wf) - up * 0.05 * h
            du = _limb_dir(limb.upper, out, tilt)
            knee_pt = hip + du * 1.85 * h * lf * limb.fs_upper
            dl = _limb_dir(limb.upper + limb.bend_sign * limb.bend, out, tilt)
            ankle = knee_pt + dl * 1.75 * h * lf * limb.fs_lower
            down = _rot((0.0, 1.0), tilt)
            fwd = _rot((self.facing, 0.0), tilt)
            foot_len = 0.22 * h + 0.26 * h * abs(s)
            foot_c = ankle + down * 0.12 * h + fwd * 0.28 * h * abs(s)
            self.legs[side] = dict(hip=hip, knee=knee_pt, ankle=ankle, foot_c=foot_c,
                                   foot=(foot_len, 0.15 * h, _angle_of(fwd)),
                                   r_upper=(0.36 * h * lw, 0.27 * h * lw),
                                   r_lower=(0.26 * h * lw, 0.18 * h * lw))
        self.hair = dict(volume=u(1.02, 1.15), line=u(0.3, 0.55), side=u(-0.45, 0.35),
                         bald=rng.random() < 0.05, long=rng.random() < 0.15,
                         long_len=u(0.5, 1.2))
        self.bag = rng.random() < 0.05 + 0.1 * d
        self.bag_side = "l" if rng.random() < 0.5 else "r"
        self.fringe_keep = u(0.05, 0.25)

    def points(self):
        """Every skeleton point (for the figure's extent)."""
        pts = [self.torso, [self.head_c + (0, -self.head_ry)], [self.head_c]]
        for limb in list(self.arms.values()) + list(self.legs.values()):
            pts.append([limb[k] for k in _POINT_KEYS if k in limb])
        return np.concatenate([np.asarray(p, float).reshape(-1, 2) for p in pts])

    def place(self, offset):
        """Move every point of the figure by `offset` (x, y)."""
        offset = np.asarray(offset, float)
        self.torso = self.torso + offset
        self.pelvis = self.pelvis + offset
        self.head_c = self.head_c + offset
        self.neck = (self.neck[0] + offset, self.neck[1] + offset, self.neck[2])
        for limb in list(self.arms.values()) + list(self.legs.values()):
            for k, v in limb.items():
                if k in _POINT_KEYS:
                    limb[k] = v + offset

    # --- parts ---

    def _head_parts(self, H, W):
        """{name: Raster} of the head group."""
        h, rx, ry, ang = self.h, self.head_rx, self.head_ry, self.head_ang
        c0 = self.head_c
        lat_h = _rot((1.0, 0.0), ang)
        up_h = _rot((0.0, -1.0), ang)
        out = {"head": draw.ellipse(H, W, c0, rx, ry, ang)}
        yaw = self.head_yaw
        size = 2 * ry

        def at(alpha, v, out_k=1.0):
            return c0 + lat_h * (rx * out_k * math.sin(alpha + yaw)) + up_h * (v * ry)

        def vis(alpha):
            return math.cos(alpha + yaw)

        if size >= 8:
            for name, alpha in (("lear", 1.45), ("rear", -1.45)):
                if vis(alpha) > -0.35:
                    out[name] = draw.ellipse(H, W, at(alpha, -0.02), max(0.13 * rx, 0.75),
                                             max(0.22 * ry, 0.75), ang)
        if size >= 9:
            for name, alpha in (("leye", 0.4), ("reye", -0.4)):
                k = vis(alpha)
                if k > 0.2:
                    out[name] = draw.ellipse(H, W, at(alpha, 0.04), max(0.13 * rx * k, 0.75),
                                             max(0.08 * ry, 0.75), ang)
            if vis(0.0) > 0.0:
                k = vis(0.0)
                out["mouth"] = draw.ellipse(H, W, at(0.0, -0.5, 0.95),
                                            max(0.24 * rx * (0.4 + 0.6 * k), 0.75),
                                            max(0.07 * ry, 0.75), ang)
                out["nose"] = draw.ellipse(H, W, at(0.0, -0.17, 1.02),
                                           max(0.1 * rx, 0.75), max(0.17 * ry, 0.75), ang)
        if size >= 16:
            for name, alpha in (("lebrow", 0.4), ("rebrow", -0.4)):
                k = vis(alpha)
                if k > 0.2:
                    out[name] = draw.ellipse(H, W, at(alpha, 0.27), max(0.17 * rx * k, 0.75),
                                             max(0.045 * ry, 0.75), ang)
        hair = self.hair
        if not hair["bald"]:
            sy, cy = math.sin(yaw), math.cos(yaw)
            line, side = hair["line"], hair["side"]
            if cy < -0.3:  # seen from the back: hair down to the nape
                side = min(side, -0.6)

            def keep(un, vn):
                z = np.sqrt(np.clip(1.0 - un * un - vn * vn, 0.0, 1.0))
                front = un * sy + z * cy
                return (vn > line) | ((front < 0.25) & (vn > side))

            vol = hair["volume"]
            cap = draw.ellipse(H, W, c0 + up_h * (0.04 * ry), rx * vol, ry * vol, ang, keep=keep)
            # The head's outline takes in the hair on the skull, as the real annotators
            # drew it (about 97% of a real hair mask lies inside its head mask).
            out["head"] = draw.union([cap, out["head"]])
            shapes = [cap]
            if hair["long"]:
                back = -math.sin(yaw) if abs(sy) > 0.3 else 0.0
                top = c0 + lat_h * (back * 0.35 * rx)
                shapes.append(draw.capsule(H, W, top, top - up_h * (hair["long_len"] * h),
                                           0.85 * rx, 0.7 * rx))
            out["hair"] = draw.union(shapes)
        return out

    def _limb_parts(self, H, W, side):
        a, g = self.arms[side], self.legs[side]
        hl, hw, ha = g["foot"]
        return {
            # The forearm starts a little past the elbow: the upper arm's rounded end
            # covers the joint (lower and upper arm overlap about as in the real files).
            side + "larm": draw.capsule(H, W, a["elbow"] + 0.1 * self.h * a["lower_dir"],
                                        a["wrist"], *a["r_lower"]),
            side + "uarm": draw.capsule(H, W, a["shoulder"], a["elbow"], *a["r_upper"]),
            side + "hand": draw.ellipse(H, W, a["hand"], 0.33 * self.h, 0.19 * self.h,
                                        _angle_of(a["hand_dir"])),
            side + "lleg": draw.capsule(H, W, g["knee"], g["ankle"], *g["r_lower"]),
            side + "uleg": draw.capsule(H, W, g["hip"], g["knee"], *g["r_upper"]),
            side + "foot": draw.ellipse(H, W, g["foot_c"], hl, hw, ha),
        }

    def part_order(self):
        """Part names in painting order (later over earlier)."""
        arm = lambda sd: [sd + "larm", sd + "uarm", sd + "hand"]  # noqa: E731
        leg = lambda sd: [sd + "lleg", sd + "uleg", sd + "foot"]  # noqa: E731
        # The person's left side is nearer the camera when it faces image left.
        left_near = self.s < 0
        far, near = ("r", "l") if left_near else ("l", "r")
        if self.profile:
            return (arm(far) + leg(far) + list(_HEAD_GROUP) + ["torso", "neck"]
                    + leg(near) + arm(near))
        first, second = ("r", "l") if self.s < -0.1 else ("l", "r")
        return (list(_HEAD_GROUP) + ["torso", "neck"] + arm(first) + arm(second)
                + leg(first) + leg(second))

    def _material_of(self, name):
        lk = self.look
        if name in ("head",):
            return lk["skin"]
        if name in ("lear", "rear"):
            return lk["ear"]
        if name in ("leye", "reye"):
            return lk["eye"]
        if name in ("lebrow", "rebrow"):
            return lk["brow"]
        if name in ("hair", "mouth", "nose", "neck"):
            return lk[name]
        if name == "torso":
            return lk["top"]
        if name.endswith("hand"):
            return lk["hand"]
        if name.endswith("foot"):
            return lk["shoes"]
        return lk[name[1:]]  # [lr]uarm -> uarm, [lr]larm -> larm, ... (side dropped)

    def layers(self, H, W):
        """[Layer] of the figure in painting order: parts, fringe, bag."""
        shapes = self._head_parts(H, W)
        shapes["torso"] = draw.polygon(H, W, self.torso, origin=self.torso[4],
                                       angle=self.t_ang)
        a, b, r = self.neck
        shapes["neck"] = draw.capsule(H, W, a, b, r, r * 0.95)
        for side in ("l", "r"):
            shapes.update(self._limb_parts(H, W, side))
        layers = [Layer(n, shapes[n], self._material_of(n))
                  for n in self.part_order() if shapes.get(n) is not None]
        if not layers:
            return layers
        fringe = self._fringe([lay.raster for lay in layers], H, W)
        if fringe is not None:
            layers.append(Layer(None, fringe, self.look["outline"]))
        if self.bag:
            layers.extend(self._bag(H, W))
        return layers

    def _fringe(self, rasters, H, W):
        """A ragged one-pixel ring around the figure: person pixels of no part."""
        body = draw.union(rasters)
        y0, x0 = body.y0 - 1, body.x0 - 1
        mask = np.pad(body.mask, 1)
        ring = ndimage.binary_dilation(mask) & ~mask
        hh, ww = ring.shape
        keep = draw.value_noise(self.rng, hh, ww, max(3, max(hh, ww) // 6))
        ring &= keep < self.fringe_keep
        ys0, xs0 = max(-y0, 0), max(-x0, 0)
        ys1, xs1 = min(hh, H - y0), min(ww, W - x0)
        ring = ring[ys0:ys1, xs0:xs1]
        if not ring.any():
            return None
        z = np.zeros(ring.shape, np.float32)
        return draw.Raster(y0 + ys0, x0 + xs0, ring, z, z, z)

    def _bag(self, H, W):
        h, sd = self.h, self.bag_side
        sign = 1.0 if sd == "l" else -1.0
        hip = self.legs[sd]["hip"]
        out = sign * (1.0 if self.c >= 0 else -1.0) if not self.profile else -self.facing
        centre = hip + self.lat * (out * 0.75 * h) + self.up * 0.1 * h
        bw, bh = 0.45 * h * self.rng.uniform(0.8, 1.3), 0.4 * h * self.rng.uniform(0.8, 1.3)
        corners = [centre + self.lat * (i * bw) + self.up * (j * bh)
                   for i, j in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        other = "r" if sd == "l" else "l"
        strap_top = self.arms[other]["shoulder"]
        layers = []
        strap = draw.capsule(H, W, strap_top, centre + self.up * bh, 0.06 * h + 0.3,
                             0.06 * h + 0.3)
        if strap is not None:
            layers.append(Layer(None, strap, self.look["bag"]))
        bag = draw.polygon(H, W, corners, origin=centre, angle=self.t_ang)
        if bag is not None:
            layers.append(Layer(None, bag, self.look["bag"]))
        return layers

    def voc_pose(self):
        if not self.profile:
            return "Frontal" if self.c > 0 else "Rear"
        return "Right" if self.facing > 0 else "Left"


# === Other objects ===

_FUR = np.array([[40, 30, 25], [120, 80, 45], [200, 160, 110], [230, 225, 215],
                 [90, 90, 90], [170, 110, 60]], float)


def _quadruped(rng, d, H, W, cls, depth):
    size = W * rng.uniform(0.18, 0.4) * (0.8 if cls == "cat" else 1.0)
    f = 1.0 if rng.random() < 0.5 else -1.0
    base = np.array([rng.uniform(0.05, 0.95) * W, rng.uniform(0.6, 0.95) * H])
    fur_rgb = np.clip(_FUR[rng.integers(len(_FUR))] * rng.uniform(0.8, 1.2), 0, 255)
    fur = draw.Material(base=fur_rgb, alt=fur_rgb * rng.uniform(0.4, 1.3),
                        pattern="mottled" if rng.random() < 0.6 else "flat",
                        grain=rng.uniform(5, 15), shade_k=0.3)
    L = size
    body_c = base + (0, -0.55 * L)
    leg_len = 0.4 * L
    layers = []
    legs = []
    for name, dx, near in (("lfleg", 0.32, f < 0), ("rfleg", 0.28, f > 0),
                           ("lbleg", -0.32, f < 0), ("rbleg", -0.28, f > 0)):
        top = body_c + (f * dx * L, 0.05 * L)
        swing = math.radians(rng.normal(0, 12))
        foot = top + np.array([math.sin(swing), math.cos(swing)]) * leg_len
        legs.append((near, Layer(name, draw.capsule(H, W, top, foot, 0.07 * L, 0.05 * L), fur)))
    layers += [lay for near, lay in legs if not near]
    layers.append(Layer("torso", draw.ellipse(H, W, body_c, 0.45 * L, 0.17 * L,
                                              math.radians(rng.normal(0, 5))), fur))
    layers += [lay for near, lay in legs if near]
    tail_a = body_c + (-f * 0.42 * L, -0.05 * L)
    layers.append(Layer("tail", draw.capsule(
        H, W, tail_a, tail_a + (-f * 0.25 * L, -rng.uniform(-0.1, 0.3) * L), 0.04 * L,
        0.025 * L), fur))
    head_c = body_c + (f * 0.5 * L, -rng.uniform(0.15, 0.3) * L)
    layers.append(Layer("neck", draw.capsule(H, W, body_c + (f * 0.3 * L, -0.05 * L), head_c,
                                             0.11 * L, 0.1 * L), fur))
    layers.append(Layer("head", draw.ellipse(H, W, head_c, 0.15 * L, 0.13 * L), fur))
    for name, dx in (("lear", -0.06), ("rear", 0.06)):
        ec = head_c + (f * dx * L, -0.12 * L)
        tri = [ec + (-0.05 * L, 0.03 * L), ec + (0.05 * L, 0.03 * L),
               ec + (0.0, -0.09 * L if cls == "cat" else 0.07 * L)]
        layers.append(Layer(name, draw.polygon(H, W, tri), fur))
    muz = head_c + (f * 0.14 * L, 0.03 * L)
    if cls == "dog":
        layers.append(Layer("muzzle", draw.ellipse(H, W, muz, 0.09 * L, 0.06 * L), fur))
    layers.append(Layer("nose", draw.ellipse(H, W, muz + (f * 0.07 * L, -0.01 * L),
                                             max(0.025 * L, 0.75), max(0.02 * L, 0.75)),
                        _flat(rng, (25, 20, 20))))
    return Entity(cls, [lay for lay in layers if lay.raster is not None], depth,
                  pose="Right" if f > 0 else "Left")


def _chair(rng, d, H, W, depth, seat=None, size=None):
    """A chair (no parts); `seat` (x, y) puts its seat there, `size` its height."""
    s = size if size is not None else H * rng.uniform(0.25, 0.45)
    if seat is not None:
        base = np.array([seat[0], seat[1] + 0.45 * s])
    else:
        base = np.array([rng.uniform(0.05, 0.95) * W, rng.uniform(0.65, 1.0) * H])
    wood = _material(rng, d, _random_color(rng, d) * rng.uniform(0.4, 0.9), patterned_p=0.3)
    f = 1.0 if rng.random() < 0.5 else -1.0
    seat_y = base[1] - 0.45 * s
    seat_w = 0.5 * s
    rasters = [
        draw.polygon(H, W, [base + (-seat_w / 2, -0.45 * s), base + (seat_w / 2, -0.45 * s),
                            base + (seat_w / 2, -0.38 * s), base + (-seat_w / 2, -0.38 * s)]),
        draw.polygon(H, W, [base + (-f * seat_w / 2, -0.45 * s),
                            base + (-f * seat_w / 2 + f * 0.08 * s, -0.45 * s),
                            base + (-f * seat_w / 2 + f * 0.1 * s, -1.05 * s),
                            base + (-f * seat_w / 2 + f * 0.0 * s, -1.05 * s)]),
    ]
    for dx in (-0.45, 0.45):
        top = np.array([base[0] + dx * seat_w, seat_y])
        rasters.append(draw.capsule(H, W, top, top + (dx * 0.06 * s, 0.45 * s),
                                    0.025 * s + 0.4, 0.025 * s + 0.4))
    return Entity("chair", [Layer(None, r, wood) for r in rasters if r is not None], depth)


def _car(rng, d, H, W, depth):
    L = W * rng.uniform(0.45, 0.9)
    f = 1.0 if rng.random() < 0.5 else -1.0
    base = np.array([rng.uniform(-0.1, 1.1) * W, rng.uniform(0.7, 1.0) * H])
    paint = _material(rng, d, _random_color(rng, 1.0), patterned_p=0.1, shade_k=0.2)
    glass = _flat(rng, np.clip(rng.normal(70, 20, 3), 0, 255), shade_k=0.1)
    tyre = _flat(rng, (25, 25, 28), shade_k=0.4)
    x0, y0 = base[0] - L / 2, base[1]
    body = [(x0, y0 - 0.12 * L), (x0 + L, y0 - 0.12 * L), (x0 + L, y0 - 0.3 * L),
            (x0 + 0.75 * L if f > 0 else x0 + 0.7 * L, y0 - 0.32 * L),
            (x0 + 0.62 * L, y0 - 0.48 * L), (x0 + 0.3 * L, y0 - 0.48 * L),
            (x0 + 0.2 * L, y0 - 0.32 * L), (x0, y0 - 0.3 * L)]
    layers = [Layer("rightside" if f > 0 else "leftside", draw.polygon(H, W, body), paint)]
    for k, (a, b) in enumerate(((0.24, 0.44), (0.47, 0.64)), start=1):
        win = [(x0 + a * L, y0 - 0.33 * L), (x0 + b * L, y0 - 0.33 * L),
               (x0 + (b - 0.04) * L, y0 - 0.45 * L), (x0 + (a + 0.06) * L, y0 - 0.45 * L)]
        layers.append(Layer(f"window_{k}", draw.polygon(H, W, win), glass))
    for k, a in enumerate((0.2, 0.8), start=1):
        layers.append(Layer(f"wheel_{k}", draw.ellipse(H, W, (x0 + a * L, y0 - 0.1 * L),
                                                       0.1 * L, 0.1 * L), tyre))
    return Entity("car", [lay for lay in layers if lay.raster is not None], depth,
                  pose="Right" if f > 0 else "Left")


def _bottle(rng, d, H, W, depth):
    s = H * rng.uniform(0.12, 0.25)
    c = np.array([rng.uniform(0.05, 0.95) * W, rng.uniform(0.3, 0.95) * H])
    glass = _material(rng, d, _random_color(rng, d), patterned_p=0.1, shade_k=0.5)
    body = draw.capsule(H, W, c + (0, 0.3 * s), c + (0, -0.2 * s), 0.16 * s, 0.16 * s)
    neck = draw.capsule(H, W, c + (0, -0.2 * s), c + (0, -0.45 * s), 0.1 * s, 0.06 * s)
    cap = draw.polygon(H, W, [c + (-0.07 * s, -0.45 * s), c + (0.07 * s, -0.45 * s),
                              c + (0.07 * s, -0.55 * s), c + (-0.07 * s, -0.55 * s)])
    layers = [Layer("body", draw.union([body, neck]), glass),
              Layer("cap", cap, _flat(rng, _random_color(rng, d)))]
    return Entity("bottle", [lay for lay in layers if lay.raster is not None], depth)


def _monitor(rng, d, H, W, depth):
    w = W * rng.uniform(0.2, 0.4)
    hgt = w * rng.uniform(0.6, 0.8)
    c = np.array([rng.uniform(0.05, 0.95) * W, rng.uniform(0.2, 0.7) * H])
    frame = _flat(rng, np.clip(rng.normal(40, 25, 3), 0, 255), shade_k=0.1)
    screen = _material(rng, d, _random_color(rng, d), patterned_p=0.6, shade_k=0.05)

    def rect(cx, cy, hw, hh):
        return draw.polygon(H, W, [(cx - hw, cy - hh), (cx + hw, cy - hh), (cx + hw, cy + hh),
                                   (cx - hw, cy + hh)])

    layers = [Layer(None, rect(c[0], c[1] + 0.55 * hgt, 0.07 * w, 0.1 * hgt), frame),
              Layer(None, rect(c[0], c[1], w / 2, hgt / 2), frame),
              Layer("screen", rect(c[0], c[1], w / 2 - 0.06 * w, hgt / 2 - 0.06 * w), screen)]
    return Entity("tvmonitor", [lay for lay in layers if lay.raster is not None], depth)


def _plant(rng, d, H, W, depth):
    s = H * rng.uniform(0.2, 0.4)
    base = np.array([rng.uniform(0.05, 0.95) * W, rng.uniform(0.65, 1.0) * H])
    pot_m = _material(rng, d, np.array([170, 90, 60]) * rng.uniform(0.6, 1.2), patterned_p=0.2)
    leaf_rgb = np.array([50, 120, 40]) * rng.uniform(0.5, 1.3)
    leaf = draw.Material(base=leaf_rgb, alt=leaf_rgb * 0.6, pattern="mottled",
                         grain=12.0, shade_k=0.3)
    pot = draw.polygon(H, W, [base + (-0.18 * s, -0.35 * s), base + (0.18 * s, -0.35 * s),
                              base + (0.13 * s, 0), base + (-0.13 * s, 0)])
    blobs = [draw.ellipse(H, W, base + (rng.normal(0, 0.15) * s, -rng.uniform(0.45, 0.9) * s),
                          rng.uniform(0.1, 0.25) * s, rng.uniform(0.1, 0.3) * s,
                          rng.uniform(0, math.pi)) for _ in range(int(rng.integers(3, 7)))]
    layers = [Layer("pot", pot, pot_m), Layer("plant", draw.union(blobs), leaf)]
    return Entity("pottedplant", [lay for lay in layers if lay.raster is not None], depth)


_OBJECT_MAKERS = {
    "dog": lambda rng, d, H, W, z: _quadruped(rng, d, H, W, "dog", z),
    "cat": lambda rng, d, H, W, z: _quadruped(rng, d, H, W, "cat", z),
    "chair": _chair,
    "car": _car,
    "bottle": _bottle,
    "tvmonitor": _monitor,
    "pottedplant": _plant,
}
_OBJECT_P = np.array([0.2, 0.12, 0.2, 0.12, 0.12, 0.12, 0.12])


# === Background ===

def _background(rng, d, H, W, camo_colors):
    """float32 (H, W, 3) cluttered background."""
    ys = np.arange(H, dtype=np.float32)[:, None]
    xs = np.arange(W, dtype=np.float32)[None, :]
    a = rng.uniform(0, 2 * math.pi)
    t = (xs * math.cos(a) + ys * math.sin(a))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    c1, c2 = _random_color(rng, d), _random_color(rng, d)
    img = (c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None])
    img = img.astype(np.float32)
    noise = draw.value_noise(rng, H, W, int(rng.integers(6, 24)))

    def paint(raster, material):
        if raster is None:
            return
        ys_, xs_ = raster.window
        m = raster.mask
        img[ys_, xs_][m] = material.colors(raster.tu[m], raster.tv[m], raster.shade[m],
                                           noise[ys_, xs_][m])

    def color():
        if camo_colors and rng.random() < 0.1 + 0.5 * d:
            return np.clip(camo_colors[rng.integers(len(camo_colors))]
                           * rng.uniform(0.85, 1.15), 0, 255)
        return _random_color(rng, d)

    if rng.random() < 0.6:  # a floor
        horizon = rng.uniform(0.35, 0.75) * H
        floor = draw.polygon(H, W, [(-1, horizon), (W + 1, horizon + rng.normal(0, 0.05 * H)),
                                    (W + 1, H + 1), (-1, H + 1)],
                             origin=(0, horizon), angle=0.0)
        paint(floor, _material(rng, d, color(), patterned_p=0.5))
    for _ in range(int(rng.poisson(2 + 14 * d))):
        kind = rng.integers(4)
        cx, cy = rng.uniform(-0.1, 1.1) * W, rng.uniform(-0.1, 1.1) * H
        sz = rng.uniform(0.05, 0.4) * min(H, W)
        if kind == 0:
            ang = rng.uniform(0, math.pi) if rng.random() < 0.5 else 0.0
            pts = [np.array((cx, cy)) + _rot((sx * sz, sy * sz * rng.uniform(0.3, 1.5)), ang)
                   for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            r = draw.polygon(H, W, pts, origin=(cx, cy), angle=ang)
        elif kind == 1:
            r = draw.ellipse(H, W, (cx, cy), sz, sz * rng.uniform(0.3, 1.0),
                             rng.uniform(0, math.pi))
        elif kind == 2:
            n = int(rng.integers(3, 7))
            pts = [(cx + rng.normal(0, sz), cy + rng.normal(0, sz)) for _ in range(n)]
            r = draw.polygon(H, W, pts, origin=(cx, cy), angle=rng.uniform(0, math.pi))
        else:
            e = np.array((cx, cy)) + _rot((sz * 2, 0), rng.uniform(0, 2 * math.pi))
            w = rng.uniform(0.5, 0.06 * min(H, W) + 0.5)
            r = draw.capsule(H, W, (cx, cy), e, w, w)
        paint(r, _material(rng, d, color()))
    for _ in range(int(rng.poisson(0.5 + 3 * d))):  # limb- and head-like distractors
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        sz = rng.uniform(0.05, 0.15) * H
        if rng.random() < 0.3:
            r = draw.ellipse(H, W, (cx, cy), sz * 0.4, sz * 0.5, rng.normal(0, 0.3))
        else:
            e = np.array((cx, cy)) + _rot((sz * 1.5, 0), rng.uniform(0, 2 * math.pi))
            r = draw.capsule(H, W, (cx, cy), e, sz * 0.22, sz * 0.16)
        paint(r, _material(rng, d, color(), patterned_p=0.3))
    img *= (1.0 + (0.1 + 0.3 * d) * (noise[..., None] - 0.5))
    return img


# === One image ===

@dataclasses.dataclass
class Annotated:
    """One visible object: what the .mat and the XML say about it.

    Args:
      cls: class name.
      mask: bool (H, W) visible mask.
      parts: [(part name, bool (H, W) mask)] in painting order.
      pose: VOC pose text.
      truncated: touches the image border.
      occluded: something nearer covers part of it.
    """

    cls: str
    mask: np.ndarray
    parts: list
    pose: str
    truncated: bool
    occluded: bool


def _place_figure(rng, d, H, W, fig, near_x=None):
    """Translate a figure: its feet near a ground line, horizontally random or near
    `near_x` (to overlap another figure)."""
    pts = fig.points()
    xmin, ymin = pts.min(axis=0)
    xmax, ymax = pts.max(axis=0)
    bottom = ymax + 0.2 * fig.h
    if near_x is not None:
        cx = near_x + rng.choice([-1, 1]) * rng.uniform(0.3, 0.7) * (xmax - xmin + 2 * fig.h)
    else:
        margin = 0.05 + 0.15 * d
        cx = rng.uniform(-margin, 1 + margin) * W
    ground = rng.uniform(0.75, 1.0 + 0.2 * d) * H
    if rng.random() < 0.25 + 0.2 * d:  # close-up: the legs leave the frame
        ground = H + rng.uniform(0.2, 0.5) * (ymax - ymin)
    fig.place((cx - (xmin + xmax) / 2, ground - bottom))


def _scene(rng, d, H, W):
    """(entities sorted far to near, a list of colours used by the figures)."""
    n_persons = int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
    entities, colors, centres = [], [], []
    for k in range(n_persons):
        look = _person_look(rng, d)
        colors += [look["skin"].base, look["top"].base, look["bottom"].base,
                   look["hair"].base]
        depth = rng.random()
        height = H * rng.uniform(0.45, 0.95) * (0.8 + 0.4 * depth)
        fig = _Figure(rng, d, height, look)
        near = None
        if centres and rng.random() < 0.25 + 0.5 * d:
            near = centres[rng.integers(len(centres))]
        _place_figure(rng, d, H, W, fig, near)
        centres.append(float(fig.pelvis[0]))
        layers = fig.layers(H, W)
        if not layers:
            continue
        gain = rng.uniform(0.0, 0.15 + 0.35 * d)
        ang = rng.uniform(0, 2 * math.pi)
        light = (gain, math.cos(ang), math.sin(ang), fig.pelvis[0], fig.pelvis[1],
                 max(fig.h * 7.5, 1.0))
        entities.append(Entity("person", layers, depth, fig.voc_pose(), light))
        if fig.pose == "sit" and rng.random() < 0.6:
            seat = fig.pelvis + (0.0, 0.25 * fig.h)
            chair = _chair(rng, d, H, W, depth - 0.01, seat=seat, size=4.2 * fig.h)
            if chair.layers:
                entities.append(chair)
    names = list(_OBJECT_MAKERS)
    for _ in range(min(int(rng.poisson(0.4 + 1.6 * d)), 4)):
        cls = names[rng.choice(len(names), p=_OBJECT_P / _OBJECT_P.sum())]
        depth = rng.random() * (1.0 if rng.random() < 0.3 + 0.4 * d else 0.3)
        ent = _OBJECT_MAKERS[cls](rng, d, H, W, depth)
        if ent.layers:
            entities.append(ent)
    entities.sort(key=lambda e: e.depth)
    return entities, colors


def _annotate(entities, H, W):
    """[Annotated] of the visible objects, far to near; persons too hidden are None."""
    full = [e.full_mask(H, W) for e in entities]
    covered = np.zeros((H, W), bool)
    visible = [None] * len(entities)
    for i in range(len(entities) - 1, -1, -1):
        visible[i] = full[i] & ~covered
        covered |= full[i]
    out = []
    for ent, fm, vis in zip(entities, full, visible):
        n = int(vis.sum())
        if n == 0 or (ent.cls == schema.PERSON_CLASS
                      and (n < max(30, 0.006 * H * W) or n < 0.3 * fm.sum())):
            out.append(None)
            continue
        parts = []
        later_free = np.zeros((H, W), bool)   # no-part pixels painted after a part
        later_named = np.zeros((H, W), bool)  # parts painted after a part
        for layer in reversed(ent.layers):
            m = layer.raster.full(H, W)
            if layer.name is None:
                later_free |= m
                continue
            pm = m & vis & ~later_free
            if (pm & ~later_named).any():
                parts.append((layer.name, pm))
            later_named |= pm
        parts.reverse()
        rows, cols = np.flatnonzero(vis.any(axis=1)), np.flatnonzero(vis.any(axis=0))
        truncated = bool(rows[0] == 0 or cols[0] == 0 or rows[-1] == H - 1
                         or cols[-1] == W - 1)
        out.append(Annotated(ent.cls, vis, parts, ent.pose, truncated,
                             bool(n < fm.sum())))
    return out


def _paint(img, entities, noise):
    """Paint the entities far to near onto img (float32 H x W x 3), in place."""
    for ent in entities:
        gain, lx, ly, cx, cy, size = ent.light
        for layer in ent.layers:
            r = layer.raster
            ys, xs = r.window
            m = r.mask
            cols = layer.material.colors(r.tu[m], r.tv[m], r.shade[m], noise[ys, xs][m])
            if gain:
                yy, xx = np.nonzero(m)
                ramp = ((xx + r.x0 - cx) * lx + (yy + r.y0 - cy) * ly) / size
                cols = cols * (1.0 + gain * np.clip(ramp, -1, 1))[:, None]
            img[ys, xs][m] = cols


def _finish(rng, d, img):
    """uint8 RGB after lighting, colour cast, blur and sensor noise."""
    H, W = img.shape[:2]
    ys = np.arange(H, dtype=np.float32)[:, None] / H - 0.5
    xs = np.arange(W, dtype=np.float32)[None, :] / W - 0.5
    a = rng.uniform(0, 2 * math.pi)
    ramp = 1.0 + rng.uniform(0, 0.15 + 0.3 * d) * (xs * math.cos(a) + ys * math.sin(a))
    cast = 1.0 + rng.normal(0, 0.02 + 0.06 * d, 3)
    img = img * ramp[..., None] * cast[None, None, :].astype(np.float32)
    img = (img - 128.0) * rng.uniform(0.85, 1.1) + 128.0 + rng.normal(0, 6)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.4 + 0.5 * d)))
    out = np.asarray(pil, np.float32)
    out = out + rng.normal(0, rng.uniform(1.0, 2.0 + 5.0 * d), out.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def render_image(seed: int, index: int, height: int, width: int, difficulty: float):
    """(uint8 RGB image, [Annotated] in file order, JPEG quality) of image `index`.

    Drawn from numpy's Generator seeded with (seed, index) alone.
    """
    rng = np.random.default_rng([seed, index])
    d = float(difficulty)
    H, W = height, width
    for attempt in range(20):
        entities, colors = _scene(rng, d, H, W)
        annotated = _annotate(entities, H, W)
        hidden = [e for e, a in zip(entities, annotated)
                  if a is None and e.cls == schema.PERSON_CLASS]
        if hidden:  # a figure nobody would annotate: leave it out, recompute occlusion
            entities = [e for e in entities if not any(e is h for h in hidden)]
            annotated = _annotate(entities, H, W)
        keep = [(e, a) for e, a in zip(entities, annotated) if a is not None]
        if any(a.cls == schema.PERSON_CLASS for _, a in keep):
            break
    else:
        raise RuntimeError(f"image {index}: no visible person after 20 scenes")
    # Entities hidden entirely (non-persons) are not drawn either.
    entities = [e for e, _ in keep]
    img = _background(rng, d, H, W, colors)
    noise = draw.value_noise(rng, H, W, max(8, min(H, W) // 4))
    noise = 0.6 * noise + 0.4 * rng.random((H, W), dtype=np.float32)
    _paint(img, entities, noise)
    image = _finish(rng, d, img)
    order = rng.permutation(len(keep))
    objects = [keep[i][1] for i in order]
    quality = int(rng.integers(int(round(95 - 25 * d)), 96))
    return image, objects, quality


# === Writers ===

def encode_mat(image_id: str, objects) -> bytes:
    """The bytes of a Pascal-Part .mat file (struct `anno`) for `objects`."""
    arr = np.zeros((1, len(objects)), dtype=_OBJECT_DTYPE)
    for k, obj in enumerate(objects):
        if obj.parts:
            parts = np.zeros((1, len(obj.parts)), dtype=_PART_DTYPE)
            for j, (name, mask) in enumerate(obj.parts):
                parts["part_name"][0, j] = name
                parts["mask"][0, j] = mask.astype(np.uint8)
        else:
            parts = np.zeros((0, 0), dtype=_PART_DTYPE)
        arr["class"][0, k] = obj.cls
        arr["class_ind"][0, k] = np.array([[VOC_CLASS_IND[obj.cls]]], np.uint8)
        arr["mask"][0, k] = obj.mask.astype(np.uint8)
        arr["parts"][0, k] = parts
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno["imname"][0, 0] = image_id
    anno["objects"][0, 0] = arr
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"anno": anno}, do_compression=True)
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")
    return bytes(data)


def voc_box(mask: np.ndarray):
    """(xmin, ymin, xmax, ymax), VOC's 1-based inclusive pixel box of a mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1


def encode_xml(image_id: str, height: int, width: int, objects) -> bytes:
    """VOC XML bytes: every object with its tight 1-based box, in `objects` order."""
    lines = ["<annotation>", "\t<folder>synthetic</folder>",
             f"\t<filename>{image_id}.jpg</filename>",
             "\t<source>", "\t\t<database>coseg_tf synthetic</database>", "\t</source>",
             "\t<size>", f"\t\t<width>{width}</width>", f"\t\t<height>{height}</height>",
             "\t\t<depth>3</depth>", "\t</size>", "\t<segmented>1</segmented>"]
    for obj in objects:
        xmin, ymin, xmax, ymax = voc_box(obj.mask)
        lines += ["\t<object>", f"\t\t<name>{obj.cls}</name>", f"\t\t<pose>{obj.pose}</pose>",
                  f"\t\t<truncated>{int(obj.truncated)}</truncated>",
                  f"\t\t<occluded>{int(obj.occluded)}</occluded>",
                  "\t\t<difficult>0</difficult>", "\t\t<bndbox>",
                  f"\t\t\t<xmin>{xmin}</xmin>", f"\t\t\t<ymin>{ymin}</ymin>",
                  f"\t\t\t<xmax>{xmax}</xmax>", f"\t\t\t<ymax>{ymax}</ymax>",
                  "\t\t</bndbox>", "\t</object>"]
    lines.append("</annotation>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _write(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)


# === Person statistics (how much like real persons the figures are) ===

# The all4 part groups (pipelines.schema), for "all four parts present".
_PART_GROUPS = {"head": schema.HEAD, "body": schema.BODY, "hand": schema.HAND,
                "leg": schema.LEG}
# The network's output stride: a person's box size in feature cells.
_OUTPUT_STRIDE = 8


def person_record(mask: np.ndarray, part_names) -> dict:
    """What `person_statistics` reads of one annotated person.

    Args:
      mask: bool (H, W), the person's visible mask (non-empty).
      part_names: names of the parts annotated on it (Pascal-Part names).

    Returns:
      {"fill": mask pixels / box pixels (box = the mask's tight inclusive box),
       "box_size": sqrt(box width * box height) in pixels,
       "groups": the all4 groups (head, body, hand, leg) with at least one part}.
    """
    xmin, ymin, xmax, ymax = voc_box(mask)
    w, h = xmax - xmin + 1, ymax - ymin + 1
    names = set(part_names)
    return {"fill": float(mask.sum()) / float(w * h), "box_size": math.sqrt(w * h),
            "groups": sorted(g for g, members in _PART_GROUPS.items()
                             if names.intersection(members))}


def person_statistics(records) -> dict:
    """Averages over persons of `person_record`s.

    Returns:
      {"persons": count, "mean_fill": mean of mask / box (real Pascal-Part persons of
       ../shared/fixtures: 0.55), "mean_box_size_px": mean sqrt(w h), "mean_box_cells":
       the same in cells of the stride-8 feature grid, "all_four_parts": share of persons
       with head, body, hand and leg parts, "share_with": {group: share of persons}}.
    """
    records = list(records)
    n = len(records)
    if n == 0:
        return {"persons": 0}
    size = float(np.mean([r["box_size"] for r in records]))
    return {
        "persons": n,
        "mean_fill": float(np.mean([r["fill"] for r in records])),
        "mean_box_size_px": size,
        "mean_box_cells": size / _OUTPUT_STRIDE,
        "all_four_parts": float(np.mean([len(r["groups"]) == 4 for r in records])),
        "share_with": {g: float(np.mean([g in r["groups"] for r in records]))
                       for g in _PART_GROUPS},
    }


def format_person_statistics(stats: dict) -> str:
    """One line of `person_statistics` for a log."""
    if not stats.get("persons"):
        return "no persons"
    groups = ", ".join(f"{g} {100 * v:.0f}%" for g, v in stats["share_with"].items())
    return (f"{stats['persons']} persons: mask fills {100 * stats['mean_fill']:.1f}% of its "
            f"box on average; box {stats['mean_box_size_px']:.0f} px = "
            f"{stats['mean_box_cells']:.1f} feature cells (sqrt(w h) / 8); all four parts in "
            f"{100 * stats['all_four_parts']:.0f}% ({groups})")


def _make_one(task):
    """Render image `index` and write its three files; returns its counts."""
    output_dir, seed, index, height, width, difficulty = task
    image_id = ID_FORMAT.format(index)
    image, objects, quality = render_image(seed, index, height, width, difficulty)
    _write(os.path.join(output_dir, IMAGES_DIR, image_id + ".jpg"),
           encode_jpeg(image, quality))
    _write(os.path.join(output_dir, PARTS_DIR, image_id + ".mat"),
           encode_mat(image_id, objects))
    _write(os.path.join(output_dir, VOC_DIR, image_id + ".xml"),
           encode_xml(image_id, height, width, objects))
    classes, parts, persons = {}, {}, []
    for obj in objects:
        classes[obj.cls] = classes.get(obj.cls, 0) + 1
        if obj.cls == schema.PERSON_CLASS:
            for name, _ in obj.parts:
                parts[name] = parts.get(name, 0) + 1
            persons.append(person_record(obj.mask, [name for name, _ in obj.parts]))
    return {"classes": classes, "parts": parts, "persons": persons}


# === Arguments and output directory ===

def parse_image_size(value) -> tuple:
    """(height, width) of an int, an (h, w) pair or a string "S" / "H,W"."""
    what = f"image_size {value!r}"
    if isinstance(value, str):
        try:
            nums = [int(v) for v in value.replace("x", ",").split(",")]
        except ValueError:
            raise ValueError(f"{what}: expected an integer or 'H,W'") from None
    elif isinstance(value, (int, np.integer)):
        nums = [int(value)]
    else:
        try:
            nums = [int(v) for v in value]
        except (TypeError, ValueError):
            raise ValueError(f"{what}: expected an integer or (height, width)") from None
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2:
        raise ValueError(f"{what}: expected one size or two (height, width)")
    for n in nums:
        if not MIN_SIDE <= n <= MAX_SIDE:
            raise ValueError(f"{what}: each side must be in [{MIN_SIDE}, {MAX_SIDE}] pixels")
    return nums[0], nums[1]


def _check_args(num_images, seed, difficulty, val_fraction, num_workers):
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)):
        raise ValueError(f"num_images must be an integer, got {num_images!r}")
    if not 0 < num_images <= MAX_IMAGES:
        raise ValueError(f"num_images must be in [1, {MAX_IMAGES}], got {num_images}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(difficulty, (int, float)) and 0.0 <= difficulty <= 1.0):
        raise ValueError(f"difficulty must be a number in [0, 1], got {difficulty!r}")
    if not (isinstance(val_fraction, (int, float)) and 0.0 <= val_fraction < 1.0):
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) \
            or num_workers < 1:
        raise ValueError(f"num_workers must be an integer >= 1, got {num_workers!r}")


def _prepare_output_dir(output_dir: str):
    """Create the layout; refuse a non-empty directory that is not an earlier output
    of this tool, and clear the image files of an earlier output."""
    if not output_dir:
        raise ValueError("output_dir is required")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"output_dir {output_dir} exists and is not a directory")
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        if not os.path.isfile(os.path.join(output_dir, MANIFEST_NAME)):
            raise ValueError(
                f"output_dir {output_dir} is not empty and holds no {MANIFEST_NAME}: "
                "refusing to write synthetic data over other content (use an empty or new "
                "directory, or an earlier output of this tool)")
        for sub, ext in ((IMAGES_DIR, ".jpg"), (PARTS_DIR, ".mat"), (VOC_DIR, ".xml")):
            folder = os.path.join(output_dir, sub)
            if os.path.isdir(folder):
                for name in os.listdir(folder):
                    if name.startswith("syn_") and name.endswith(ext):
                        os.remove(os.path.join(folder, name))
    for sub in (IMAGES_DIR, PARTS_DIR, VOC_DIR, SETS_DIR):
        os.makedirs(os.path.join(output_dir, sub), exist_ok=True)


def split_ids(num_images: int, val_fraction: float):
    """(train ids, val ids): image i is in val when floor((i + 1) f) > floor(i f), so
    floor(N f) images spread evenly are val, and a prefix keeps its split."""
    train, val = [], []
    for i in range(num_images):
        is_val = math.floor((i + 1) * val_fraction + 1e-9) > math.floor(i * val_fraction + 1e-9)
        (val if is_val else train).append(ID_FORMAT.format(i))
    return train, val


_README = """coseg_tf synthetic dataset (tools/make_synthetic.py), in the Pascal VOC /
Pascal-Part source layout:

  JPEGImages/ID.jpg          images
  Annotations_Part/ID.mat    Pascal-Part struct `anno` (imname, objects: class,
                             class_ind, mask, parts(part_name, mask))
  Annotations/ID.xml         VOC XML, 1-based inclusive boxes of every object
  ImageSets/train.txt        training ids
  ImageSets/val.txt          validation ids
  {manifest}    settings and counts

Convert with tools/make_tfrecords.py (pascal_part_dir=Annotations_Part,
images_dir=JPEGImages, voc_annotations_dir=Annotations, split_list=ImageSets/*.txt).
Settings: num_images={num_images} image_size={height}x{width} seed={seed}
difficulty={difficulty} val_fraction={val_fraction} (generator version {version}).
"""


def generate(*, output_dir: str, num_images: int = DEFAULT_NUM_IMAGES,
             image_size=DEFAULT_IMAGE_SIZE, seed: int = DEFAULT_SEED,
             difficulty: float = DEFAULT_DIFFICULTY,
             val_fraction: float = DEFAULT_VAL_FRACTION, num_workers: int = 1,
             log_every: int = 0) -> dict:
    """Write the synthetic dataset to `output_dir`; returns a summary dict.

    Args:
      output_dir: where to write (created; must be empty, new, or an earlier output of
        this tool, whose image files are replaced).
      num_images: how many images (ids syn_000000 ...).
      image_size: int, (height, width) or "H,W".
      seed: non-negative integer; image i is drawn from the seed (seed, i).
      difficulty: in [0, 1]; see the module docstring.
      val_fraction: share of ids in ImageSets/val.txt, in [0, 1).
      num_workers: processes (1 = in this process); the output does not depend on it.
      log_every: log progress every this many images (0: about ten times).

    Raises:
      ValueError: a bad argument or an output_dir holding other content.
    """
    from absl import logging

    height, width = parse_image_size(image_size)
    _check_args(num_images, seed, difficulty, val_fraction, num_workers)
    start = time.perf_counter()
    _prepare_output_dir(output_dir)
    tasks = [(output_dir, int(seed), i, height, width, float(difficulty))
             for i in range(num_images)]
    log_every = log_every or max(1, num_images // 10)
    classes, parts, persons = {}, {}, []

    def results():
        if num_workers == 1:
            yield from map(_make_one, tasks)
            return
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(num_workers) as pool:
            yield from pool.imap(_make_one, tasks, chunksize=4)

    for done, stats in enumerate(results(), start=1):
        persons += stats["persons"]
        for key, acc in (("classes", classes), ("parts", parts)):
            for name, n in stats[key].items():
                acc[name] = acc.get(name, 0) + n
        if done % log_every == 0 or done == num_images:
            logging.info("make_synthetic: %d/%d images", done, num_images)
    train, val = split_ids(num_images, val_fraction)
    for name, ids in (("train.txt", train), ("val.txt", val)):
        _write(os.path.join(output_dir, SETS_DIR, name),
               "".join(i + "\n" for i in ids).encode("utf-8"))
    settings = {"num_images": int(num_images), "image_size": [height, width],
                "seed": int(seed), "difficulty": float(difficulty),
                "val_fraction": float(val_fraction)}
    manifest = {
        "generator": "coseg_tf tools/make_synthetic.py",
        "generator_version": GENERATOR_VERSION,
        "settings": settings,
        "layout": {"images": IMAGES_DIR, "pascal_part": PARTS_DIR, "voc_annotations": VOC_DIR,
                   "train_list": f"{SETS_DIR}/train.txt", "val_list": f"{SETS_DIR}/val.txt"},
        "counts": {"images": int(num_images), "train": len(train), "val": len(val),
                   "objects_by_class": dict(sorted(classes.items())),
                   "person_parts": {n: parts.get(n, 0) for n in schema.PART_NAMES}},
        "person_statistics": person_statistics(persons),
        "part_names": list(schema.PART_NAMES),
    }
    _write(os.path.join(output_dir, MANIFEST_NAME),
           (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    _write(os.path.join(output_dir, README_NAME), _README.format(
        manifest=MANIFEST_NAME.ljust(24), num_images=num_images, height=height, width=width,
        seed=seed, difficulty=difficulty, val_fraction=val_fraction,
        version=GENERATOR_VERSION).encode("utf-8"))
    seconds = time.perf_counter() - start
    summary = dict(manifest["counts"], output_dir=output_dir, seconds=seconds, **settings)
    summary["persons"] = classes.get(schema.PERSON_CLASS, 0)
    summary["other_objects"] = sum(n for c, n in classes.items() if c != schema.PERSON_CLASS)
    summary["person_statistics"] = manifest["person_statistics"]
    logging.info("make_synthetic: wrote %d images (%d train, %d val) with %d persons and %d "
                 "other objects to %s in %.1f s", num_images, len(train), len(val),
                 summary["persons"], summary["other_objects"], output_dir, seconds)
    logging.info("make_synthetic: %s",
                 format_person_statistics(manifest["person_statistics"]))
    return summary


# === Command line ===

def define_flags(flag_values=None):
    """Define this tool's absl flags (called by `run`, not at import, so that other
    tools' flags of the same names can live beside them in tests)."""
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    flags.DEFINE_string("output_dir", None, "Where to write the dataset (required).",
                        flag_values=fv)
    flags.DEFINE_integer("num_images", DEFAULT_NUM_IMAGES, "How many images.", flag_values=fv)
    flags.DEFINE_string("image_size", str(DEFAULT_IMAGE_SIZE),
                        "Image size: S (square) or H,W.", flag_values=fv)
    flags.DEFINE_integer("seed", DEFAULT_SEED, "Seed; image i is drawn from (seed, i).",
                         flag_values=fv)
    flags.DEFINE_float("difficulty", DEFAULT_DIFFICULTY,
                       "In [0, 1]: clutter, occlusion, pose and appearance spread. "
                       "The default is fixed; do not tune it.", flag_values=fv)
    flags.DEFINE_float("val_fraction", DEFAULT_VAL_FRACTION,
                       "Share of the ids in ImageSets/val.txt.", flag_values=fv)
    flags.DEFINE_integer("num_workers", 1, "Worker processes (the output does not depend "
                         "on it).", flag_values=fv)
    flags.mark_flag_as_required("output_dir", flag_values=fv)


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    try:
        generate(output_dir=f.output_dir, num_images=f.num_images, image_size=f.image_size,
                 seed=f.seed, difficulty=f.difficulty, val_fraction=f.val_fraction,
                 num_workers=f.num_workers)
    except ValueError as e:
        raise app.UsageError(str(e)) from None


def run():
    """Console entry point (coseg-make-synthetic)."""
    import sys

    from coseg_tf import cli

    define_flags()
    cli.run_program(main, sys.modules[__name__], "coseg-make-synthetic",
                    description=__doc__)


if __name__ == "__main__":
    run()
