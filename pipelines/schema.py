"""The one TFRecord format of coseg_tf, the part vocabularies it refers to, and the schemes.

Everything that writes or reads examples (tools/make_tfrecords.py, pipelines/records.py,
pipelines/decode.py, pipelines/dataset_files.py) takes its keys and vocabularies from
here, so they cannot drift apart.

Feature keys of a `tf.train.Example` (DESIGN.md §1):

  image/encoded     bytes    the JPEG bytes of the upright image (the original file, or
                             re-encoded upright when its EXIF orientation says so)
  image/id          bytes    image id, e.g. b"2008_000652"
  image/height      int64
  image/width       int64
  human/boxes       float[]  N x 4 flattened, normalized (ymin, xmin, ymax, xmax), one
                             row per person of the image
  annotation/kind   bytes    what the record carries: b"parts" (part map, instance mask
                             and boxes) or b"boxes" (person boxes only: the unlabeled
                             pool); absent in records of schema version 1 = b"parts"
  person/mask       bytes    PNG, uint8, 0 = no person, k = k-th person ("parts" only)
  parts/fine        bytes    PNG, uint8, 0 = no part, i = the i-th name of the record's
                             vocabulary; parts are painted in file order (a later part
                             covers an earlier one) ("parts" only)
  parts/vocabulary  bytes[]  the vocabulary: value i of parts/fine is the i-th name
                             (from 1; "parts" only); absent in records of schema
                             version 1 = the Pascal-Part vocabulary PART_NAMES

Vocabularies (`Vocabulary`): the Pascal-Part person part names (`PASCAL_PART`, what
`tools/make_tfrecords.py --source=pascal_part` writes), or the names of a PNG source's
label values (Pascal-Person-Part's 6 parts, LIP's 19, a user's own). Two vocabularies are
the same when they list the same names in the same order.

Schemes (`Scheme`): a merge of vocabulary names into training classes, applied in the
input pipeline through a lookup table (`Scheme.lookup_table`), so one conversion serves
every scheme. The built-ins (`SCHEMES`) name Pascal-Part parts; a JSON file
(`load_scheme`) can name the parts of any vocabulary. A scheme is bound to the
vocabulary of the data it reads (`Scheme.bind`), which refuses a scheme that names a
part the vocabulary lacks.

This module is pure Python + NumPy: importing it does not import TensorFlow.
"""

from __future__ import annotations

import os
import re

import numpy as np

# === Feature keys ===
KEY_IMAGE = "image/encoded"
KEY_ID = "image/id"
KEY_HEIGHT = "image/height"
KEY_WIDTH = "image/width"
KEY_BOXES = "human/boxes"
KEY_ANNOTATION = "annotation/kind"
KEY_PERSON_MASK = "person/mask"
KEY_PARTS_FINE = "parts/fine"
KEY_VOCABULARY = "parts/vocabulary"

# What a record carries (annotation/kind).
ANNOTATION_PARTS = "parts"
ANNOTATION_BOXES = "boxes"
ANNOTATIONS = (ANNOTATION_PARTS, ANNOTATION_BOXES)

# Keys every record holds, of any schema version.
REQUIRED_KEYS = (KEY_IMAGE, KEY_ID, KEY_HEIGHT, KEY_WIDTH, KEY_BOXES)
# Keys a record that carries parts holds beside them (version 1 records: the first two).
PART_KEYS = (KEY_PERSON_MASK, KEY_PARTS_FINE)
# The keys the converter writes, per annotation kind.
FEATURE_KEYS = REQUIRED_KEYS + (KEY_ANNOTATION,) + PART_KEYS + (KEY_VOCABULARY,)
BOXES_FEATURE_KEYS = REQUIRED_KEYS + (KEY_ANNOTATION,)

# Bumped when the example layout changes; written into every manifest.
# 2: annotation/kind and parts/vocabulary; box-only records (no person/mask, parts/fine).
SCHEMA_VERSION = 2

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

# Left/right pairs of Pascal-Part swapped by a horizontal flip.
LEFT_RIGHT_PAIRS = (
    ("leye", "reye"), ("lear", "rear"), ("lebrow", "rebrow"),
    ("llarm", "rlarm"), ("luarm", "ruarm"), ("lhand", "rhand"),
    ("llleg", "rlleg"), ("luleg", "ruleg"), ("lfoot", "rfoot"),
)

# A uint8 PNG holds values 0..255: at most 255 part names.
MAX_PART_NAMES = 255
_SIDE_WORD = re.compile(r"(?<![A-Za-z])(left|right)(?![a-z])", re.IGNORECASE)


def _mirror_word(match) -> str:
    word = match.group(0)
    other = "right" if word.lower() == "left" else "left"
    if word.isupper():
        return other.upper()
    return other.capitalize() if word[0].isupper() else other


class Vocabulary:
    """The names of the values of a `parts/fine` map: value i is part_names[i - 1].

    Value 0 is "no part" (the background of a label map) and has no name here.

    Args:
      part_names: the names of values 1, 2, ...: non-empty single-line strings, no
        name twice, at most 255 (a uint8 map).
      name: a name to show (e.g. "pascal_part", or a vocabulary file's stem); not part
        of the identity: two vocabularies are equal when their part names are.

    Left/right pairs (swapped by a horizontal flip, `flip_permutation`): the Pascal-Part
    pairs of LEFT_RIGHT_PAIRS whose two names are both present, and names that differ
    only by a word "left" / "right" (any case, e.g. LIP's "Left-arm" and "Right-arm").

    Raises:
      ValueError naming the bad name.
    """

    def __init__(self, part_names, name: str = ""):
        names = tuple(part_names)
        for value, part in enumerate(names, start=1):
            if not isinstance(part, str) or not part.strip() or part != part.strip() \
                    or "\n" in part or "\r" in part:
                raise ValueError(f"vocabulary {name or ''}: the name of value {value} must "
                                 f"be a non-empty single line without surrounding spaces, "
                                 f"got {part!r}")
        seen = {}
        for value, part in enumerate(names, start=1):
            if part in seen:
                raise ValueError(f"vocabulary {name or ''}: {part!r} names values "
                                 f"{seen[part]} and {value}")
            seen[part] = value
        if not names:
            raise ValueError(f"vocabulary {name or ''}: no part name")
        if len(names) > MAX_PART_NAMES:
            raise ValueError(f"vocabulary {name or ''}: {len(names)} part names, more "
                             f"than a uint8 map holds ({MAX_PART_NAMES})")
        self.part_names = names
        self.name = name or "vocabulary"
        self._ids = seen

    @property
    def num_values(self) -> int:
        """Values of a map: the part names and 0 (no part)."""
        return len(self.part_names) + 1

    def id_of(self, part: str) -> int:
        """The value of `part`; KeyError when the vocabulary lacks it."""
        return self._ids[part]

    def __contains__(self, part) -> bool:
        return part in self._ids

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.part_names == other.part_names

    def __hash__(self) -> int:
        return hash(self.part_names)

    def __repr__(self) -> str:
        return f"Vocabulary({self.name!r}, {len(self.part_names)} parts)"

    def describe(self, limit: int = 6) -> str:
        """A short description for messages: 'lip (19 parts: Hat, Hair, ...)'."""
        shown = ", ".join(self.part_names[:limit])
        more = ", ..." if len(self.part_names) > limit else ""
        return f"{self.name} ({len(self.part_names)} parts: {shown}{more})"

    def flip_pairs(self) -> tuple:
        """((left, right), ...): the part names a horizontal flip swaps."""
        pairs = [(a, b) for a, b in LEFT_RIGHT_PAIRS if a in self and b in self]
        paired = {n for pair in pairs for n in pair}
        for part in self.part_names:
            mirrored = _SIDE_WORD.sub(_mirror_word, part)
            if (mirrored != part and mirrored in self and part not in paired
                    and mirrored not in paired):
                pairs.append((part, mirrored))
                paired.update((part, mirrored))
        return tuple(pairs)

    def flip_permutation(self) -> np.ndarray:
        """uint8 [num_values] t with t[value] = the value of the mirrored part (0 -> 0)."""
        table = np.arange(self.num_values, dtype=np.uint8)
        for left, right in self.flip_pairs():
            table[self.id_of(left)], table[self.id_of(right)] = (self.id_of(right),
                                                                 self.id_of(left))
        return table

    def to_json(self) -> dict:
        """{"name", "part_names"}: what manifests and model.json record."""
        return {"name": self.name, "part_names": list(self.part_names)}

    @classmethod
    def from_json(cls, content) -> "Vocabulary":
        """The inverse of `to_json` (also takes a bare list of part names)."""
        if isinstance(content, (list, tuple)):
            return cls(content)
        if not isinstance(content, dict) or not isinstance(content.get("part_names"), list):
            raise ValueError(f"a vocabulary is {{'name', 'part_names': [...]}}, got "
                             f"{content!r:.200}")
        return cls(content["part_names"], name=str(content.get("name") or ""))


PASCAL_PART = Vocabulary(PART_NAMES, name="pascal_part")


def flip_permutation() -> np.ndarray:
    """uint8 table t with t[fine_id] = the fine id of the mirrored Pascal-Part part."""
    return PASCAL_PART.flip_permutation()


def read_vocabulary(path: str) -> Vocabulary:
    """The vocabulary of a PNG source from its file: which name each label value has.

    Two forms (read through `pipelines.textfiles`: UTF-8, with or without a BOM):
    - text: one name a line, line 1 naming value 0 (the background: no part), line 2
      value 1, ...; blank lines are not allowed between names (they would shift the
      values), trailing ones are ignored;
    - JSON (`.json`): a list of names in the same order (index = value), or an object
      {"0": "background", "1": "Hat", ...} whose keys are the values 0..N, each once.
    Value 0 is always "no part", whatever its name.

    Raises:
      ValueError naming the file and what is wrong (unreadable, UTF-16, a gap in the
      values, a name twice, ...).
    """
    from pipelines import textfiles  # no TensorFlow: textfiles imports it only for gs://

    path = os.fspath(path)
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        if path.lower().endswith(".json"):
            content = textfiles.read_json(path)
            names = _vocabulary_values(content, path)
        else:
            lines = textfiles.read_lines(path)
            while lines and not lines[-1].strip():
                lines.pop()
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    raise ValueError(f"line {number} is blank: every line names the "
                                     f"value of its position (line 1 = value 0)")
            names = [line.strip() for line in lines]
        if len(names) < 2:
            raise ValueError("it names no part (value 0 is the background; parts start "
                             "at value 1)")
        return Vocabulary(names[1:], name=name)
    except OSError as e:
        raise ValueError(f"cannot read the vocabulary file {path} ({e})") from None
    except ValueError as e:
        message = str(e)
        raise ValueError(message if path in message else f"{path}: {message}") from None


def _vocabulary_values(content, path) -> list:
    if isinstance(content, list):
        return content
    if not isinstance(content, dict):
        raise ValueError(f"a JSON vocabulary is a list of names or an object "
                         f"{{value: name}}, got {type(content).__name__}")
    values = {}
    for key, value in content.items():
        try:
            number = int(key)
        except ValueError:
            raise ValueError(f"key {key!r} is not a label value (0, 1, 2, ...)") from None
        if number in values:
            raise ValueError(f"value {number} is named twice")
        values[number] = value
    missing = sorted(set(range(max(values, default=-1) + 1)) - set(values))
    if missing or min(values, default=0) < 0:
        raise ValueError(f"the values must be 0..N without a gap; missing {missing[:10]}")
    return [values[i] for i in range(len(values))]


# === Merge schemes ===
# The paper's merge (Shimoda & Yanai, §3): head = head, eyes, ears, eyebrows, nose,
# mouth, hair; body = torso, neck; hand = lower/upper arms and hands; leg = lower/upper
# legs and feet.
HEAD = ("head", "leye", "reye", "lear", "rear", "lebrow", "rebrow", "nose", "mouth", "hair")
BODY = ("torso", "neck")
HAND = ("llarm", "luarm", "lhand", "rlarm", "ruarm", "rhand")
LEG = ("llleg", "luleg", "lfoot", "rlleg", "ruleg", "rfoot")

BACKGROUND = "background"
OTHER = "other"  # "other human region": a person pixel that no selected part covers


class Scheme:
    """A merge of vocabulary names (fine parts) into training classes.

    Args:
      name: the scheme's name (a built-in's `--parts` value, or a JSON scheme's name).
      groups: (class_name, part names) in class order; class ids start at 1.
      other_region: when True the last class is "other human region" (person pixels
        no selected part covers); when False such pixels are background.
      vocabulary: the `Vocabulary` whose values `lookup_table` maps; None for a scheme
        not yet bound to data (a JSON scheme before `bind`). The built-ins are bound to
        `PASCAL_PART`.

    Raises:
      ValueError: no class, an empty group, a class name twice (or "background",
        "other"), a part in two classes, or a part `vocabulary` lacks.
    """

    def __init__(self, name, groups, other_region, vocabulary=PASCAL_PART):
        self.name = str(name)
        self.groups = tuple((str(cls), tuple(parts)) for cls, parts in groups)
        self.other_region = bool(other_region)
        if not self.groups:
            raise ValueError(f"scheme {self.name!r}: no class")
        owner = {}
        classes = set()
        for cls, parts in self.groups:
            if not cls.strip() or "\n" in cls or cls in (BACKGROUND, OTHER) or cls in classes:
                raise ValueError(f"scheme {self.name!r}: class name {cls!r} is empty, "
                                 f"repeated, or reserved ({BACKGROUND!r}, {OTHER!r})")
            classes.add(cls)
            if not parts:
                raise ValueError(f"scheme {self.name!r}: class {cls!r} names no part")
            for part in parts:
                if part in owner:
                    raise ValueError(f"scheme {self.name!r}: part {part!r} is in classes "
                                     f"{owner[part]!r} and {cls!r}")
                owner[part] = cls
        self.vocabulary = None
        if vocabulary is not None:
            self._check_vocabulary(vocabulary)
            self.vocabulary = vocabulary

    @property
    def part_names(self) -> tuple:
        """Every vocabulary name the scheme selects, in class order."""
        return tuple(p for _, parts in self.groups for p in parts)

    @property
    def class_names(self) -> tuple:
        names = (BACKGROUND,) + tuple(cls for cls, _ in self.groups)
        return names + ((OTHER,) if self.other_region else ())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def other_id(self):
        """Class id of the "other human region", or None."""
        return self.num_classes - 1 if self.other_region else None

    def _check_vocabulary(self, vocabulary: Vocabulary) -> None:
        missing = [p for p in self.part_names if p not in vocabulary]
        if missing:
            raise ValueError(
                f"scheme {self.name!r} names {len(missing)} part(s) that the vocabulary "
                f"{vocabulary.describe()} lacks: {', '.join(map(repr, missing[:10]))}"
                f"{' ...' if len(missing) > 10 else ''}")

    def bind(self, vocabulary: Vocabulary) -> "Scheme":
        """This scheme over `vocabulary` (a copy); ValueError naming each missing part."""
        return Scheme(self.name, self.groups, self.other_region, vocabulary=vocabulary)

    def lookup_table(self) -> np.ndarray:
        """uint8 table t with t[value] = class id of the part (0 where unselected).

        Raises ValueError for a scheme not bound to a vocabulary.
        """
        if self.vocabulary is None:
            raise ValueError(f"scheme {self.name!r} is not bound to a vocabulary; "
                             "bind it to the data's (Scheme.bind)")
        table = np.zeros(self.vocabulary.num_values, dtype=np.uint8)
        for class_id, (_, parts) in enumerate(self.groups, start=1):
            for part in parts:
                table[self.vocabulary.id_of(part)] = class_id
        return table

    def to_json(self) -> dict:
        """The scheme as data: what a JSON scheme file holds (`scheme_from_json`)."""
        return {"name": self.name,
                "classes": [{"name": cls, "parts": list(parts)} for cls, parts in self.groups],
                "other_region": self.other_region}

    def same_merge(self, other) -> bool:
        """Whether `other` merges the same names into the same classes."""
        return isinstance(other, Scheme) and self.to_json() == other.to_json()

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
    """The built-in scheme called `name`; a ValueError naming the choices otherwise."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(
            f"unknown part scheme {name!r}; choose one of {', '.join(SCHEMES)} or give a "
            "JSON scheme file (a path ending in .json)") from None


def scheme_from_json(content, source: str = "scheme") -> Scheme:
    """A scheme (not bound to a vocabulary) from its JSON content.

    The content: {"name": "lip4", "classes": [{"name": "head", "parts": ["Hat",
    "Hair", "Face"]}, ...], "other_region": false}. "name" defaults to `source`'s stem;
    "other_region" to false (person pixels that no selected part covers are background,
    as in Pascal-Person-Part's maps).

    Raises ValueError naming `source` and what is wrong.
    """
    try:
        if not isinstance(content, dict):
            raise ValueError(f"expected a JSON object, got {type(content).__name__}")
        unknown = sorted(set(content) - {"name", "classes", "other_region", "comment"})
        if unknown:
            raise ValueError(f"unknown keys {unknown} (a scheme has name, classes, "
                             "other_region)")
        classes = content.get("classes")
        if not isinstance(classes, list) or not classes:
            raise ValueError('"classes" must be a non-empty list of {"name": ..., '
                             '"parts": [...]}')
        groups = []
        for i, entry in enumerate(classes):
            if (not isinstance(entry, dict) or not isinstance(entry.get("name"), str)
                    or not isinstance(entry.get("parts"), list)
                    or not all(isinstance(p, str) for p in entry["parts"])):
                raise ValueError(f'class {i}: expected {{"name": str, "parts": [str, ...]}},'
                                 f" got {entry!r:.200}")
            groups.append((entry["name"], entry["parts"]))
        other = content.get("other_region", False)
        if not isinstance(other, bool):
            raise ValueError(f'"other_region" must be true or false, got {other!r}')
        name = content.get("name") or os.path.splitext(os.path.basename(source))[0]
        return Scheme(name, groups, other, vocabulary=None)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def is_scheme_file(spec) -> bool:
    """Whether a --parts value names a JSON scheme file rather than a built-in."""
    return isinstance(spec, str) and spec.lower().endswith(".json")


def load_scheme(spec: str) -> Scheme:
    """A built-in scheme by name, or a JSON scheme file (`scheme_from_json`).

    The built-ins come bound to the Pascal-Part vocabulary; a JSON scheme comes unbound.

    Raises:
      ValueError: an unknown name, or a file that cannot be read or is not a scheme
        (the message names the file).
    """
    if not is_scheme_file(spec):
        return get_scheme(spec)
    from pipelines import textfiles

    try:
        content = textfiles.read_json(spec)
    except OSError as e:
        raise ValueError(f"cannot read the scheme file {spec} ({e})") from None
    return scheme_from_json(content, source=spec)


def scheme_from_info(info: dict):
    """The scheme a run or an export recorded in its model.json (bound to the recorded
    vocabulary when there is one); None when it records only a name that is not a
    built-in. Runs of earlier versions record only "parts": the built-in of that name.
    """
    definition = info.get("scheme")
    vocabulary = info.get("vocabulary")
    if isinstance(definition, dict):
        scheme = scheme_from_json(definition, source="model.json scheme")
        if vocabulary is not None:
            return scheme.bind(Vocabulary.from_json(vocabulary))
        return scheme.bind(PASCAL_PART)
    parts = info.get("parts")
    return SCHEMES.get(parts) if isinstance(parts, str) else None
