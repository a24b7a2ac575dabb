"""The one TFRecord format of coseg_tf and the part vocabulary it refers to.

Everything that writes or reads examples (tools/make_tfrecords.py, pipelines/decode.py)
takes its keys and vocabulary from here, so the two cannot drift apart.

Feature keys of a `tf.train.Example` (DESIGN.md §1):

  image/encoded   bytes    the JPEG bytes of the upright image (the original file, or
                           re-encoded upright when its EXIF orientation says so)
  image/id        bytes    image id, e.g. b"2008_000652"
  image/height    int64
  image/width     int64
  human/boxes     float[]  N x 4 flattened, normalized (ymin, xmin, ymax, xmax), one row
                           per person of the image
  person/mask     bytes    PNG, uint8, 0 = no person, k = k-th person
  parts/fine      bytes    PNG, uint8, 0 = no part, i = PART_NAMES[i - 1]; parts are
                           painted in file order (a later part covers an earlier one)

This module is pure Python + NumPy: importing it does not import TensorFlow.
"""

from __future__ import annotations

import numpy as np

# === Feature keys ===
KEY_IMAGE = "image/encoded"
KEY_ID = "image/id"
KEY_HEIGHT = "image/height"
KEY_WIDTH = "image/width"
KEY_BOXES = "human/boxes"
KEY_PERSON_MASK = "person/mask"
KEY_PARTS_FINE = "parts/fine"
FEATURE_KEYS = (KEY_IMAGE, KEY_ID, KEY_HEIGHT, KEY_WIDTH, KEY_BOXES, KEY_PERSON_MASK,
                KEY_PARTS_FINE)

# Bumped when the example layout changes; written into every manifest.
SCHEMA_VERSION = 1

# `image/encoded` holds a JPEG: bytes that start with the JPEG start-of-image marker
# and a marker byte (the test of `tf.io.is_jpeg`), whatever name an image library gives
# the file (Pillow calls a camera's multi-picture JPEG "MPO"). The converter and the
# decoder (pipelines/decode.py) both test this.
JPEG_SOI = b"\xff\xd8\xff"

# === Part vocabulary (fine parts of a Pascal-Part person) ===
# Index i in the `parts/fine` PNG means PART_NAMES[i - 1]; 0 means no part.
PART_NAMES = (
    "head", "leye", "reye", "lear", "rear", "lebrow", "rebrow", "nose", "mouth", "hair",
    "torso", "neck",
    "llarm", "luarm", "lhand", "rlarm", "ruarm", "rhand",
    "llleg", "luleg", "lfoot", "rlleg", "ruleg", "rfoot",
)
PART_ID = {name: i + 1 for i, name in enumerate(PART_NAMES)}
NUM_FINE = len(PART_NAMES) + 1  # with 0 = no part

PERSON_CLASS = "person"
IGNORE_LABEL = 255

# Left/right pairs swapped by a horizontal flip.
LEFT_RIGHT_PAIRS = (
    ("leye", "reye"), ("lear", "rear"), ("lebrow", "rebrow"),
    ("llarm", "rlarm"), ("luarm", "ruarm"), ("lhand", "rhand"),
    ("llleg", "rlleg"), ("luleg", "ruleg"), ("lfoot", "rfoot"),
)


def flip_permutation() -> np.ndarray:
    """uint8 table t with t[fine_id] = the fine id of the mirrored part (0 -> 0)."""
    table = np.arange(NUM_FINE, dtype=np.uint8)
    for left, right in LEFT_RIGHT_PAIRS:
        table[PART_ID[left]], table[PART_ID[right]] = PART_ID[right], PART_ID[left]
    return table


# === Merge schemes ===
# The paper's merge (Shimoda & Yanai, §3): head = head, eyes, ears, eyebrows, nose,
# mouth, hair; body = torso, neck; hand = lower/upper arms and hands; leg = lower/upper
# legs and feet.
HEAD = ("head", "leye", "reye", "lear", "rear", "lebrow", "rebrow", "nose", "mouth", "hair")
BODY = ("torso", "neck")
HAND = ("llarm", "luarm", "lhand", "rlarm", "ruarm", "rhand")
LEG = ("llleg", "luleg", "lfoot", "rlleg", "ruleg", "rfoot")

OTHER = "other"  # "other human region": a person pixel that no selected part covers


class Scheme:
    """A merge of fine parts into training classes.

    Args:
      name: the scheme's name (the value of `--parts`).
      groups: (class_name, fine part names) in class order; class ids start at 1.
      other_region: when True the last class is "other human region" (person pixels
        no selected part covers); when False such pixels are background.
    """

    def __init__(self, name, groups, other_region):
        self.name = name
        self.groups = tuple((cls, tuple(parts)) for cls, parts in groups)
        self.other_region = other_region

    @property
    def class_names(self) -> tuple:
        names = ("background",) + tuple(cls for cls, _ in self.groups)
        return names + ((OTHER,) if self.other_region else ())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def other_id(self):
        """Class id of the "other human region", or None."""
        return self.num_classes - 1 if self.other_region else None

    def lookup_table(self) -> np.ndarray:
        """uint8 table t with t[fine_id] = class id of the part (0 where unselected)."""
        table = np.zeros(NUM_FINE, dtype=np.uint8)
        for class_id, (_, parts) in enumerate(self.groups, start=1):
            for part in parts:
                table[PART_ID[part]] = class_id
        return table

    def __repr__(self):
        return f"Scheme({self.name!r}, classes={self.class_names})"


SCHEMES = {
    # The paper's per-part models (Table 1): background, the part, other human region.
    "head": Scheme("head", [("head", HEAD)], other_region=True),
    "body": Scheme("body", [("body", BODY)], other_region=True),
    "hand": Scheme("hand", [("hand", HAND)], other_region=True),
    "leg": Scheme("leg", [("leg", LEG)], other_region=True),
    # Simultaneous four-part model (Table 2).
    "all4": Scheme("all4", [("head", HEAD), ("body", BODY), ("hand", HAND), ("leg", LEG)],
                   other_region=True),
    # The common Pascal-Person-Part scheme (Chen et al., CVPR 2016). Hands go with the
    # lower arms and feet with the lower legs, the neck with the torso; person pixels
    # no part covers are background, as in the published label maps.
    "person_part6": Scheme("person_part6", [
        ("head", HEAD), ("torso", BODY),
        ("upper_arms", ("luarm", "ruarm")),
        ("lower_arms", ("llarm", "rlarm", "lhand", "rhand")),
        ("upper_legs", ("luleg", "ruleg")),
        ("lower_legs", ("llleg", "rlleg", "lfoot", "rfoot")),
    ], other_region=False),
}


def get_scheme(name: str) -> Scheme:
    """The scheme called `name`; a ValueError naming the choices otherwise."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(
            f"unknown part scheme {name!r}; choose one of {', '.join(SCHEMES)}") from None
