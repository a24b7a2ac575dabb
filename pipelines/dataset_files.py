"""The dataset files: shard names, manifests, the files of a pattern, the schema check.

The one owner of the on-disk contract of a converted dataset (STYLE.md, "One concept,
one module"): `tools/make_tfrecords.py` writes through it; the streams, train.py,
eval.py and predict read through it. Nobody else builds or parses these names.

    OUTPUT_DIR/
      SPLIT-00000-of-00004.tfrecord   shards: `shard_name(SPLIT, i, n)`, never empty
      ...
      SPLIT.manifest.json             `manifest_name(SPLIT)`: counts, the ids in shard
                                      order ("shards" + "examples"), what was skipped
                                      and why, the annotation kind, the vocabulary, the
                                      sources and the arguments (`write_manifest`)
      .SPLIT.tmp-PID/                 a conversion in progress (`tmp_dir_name`); renamed
                                      shard by shard into place when complete

Readers take a file pattern: a glob, or comma-separated globs (`list_files`); manifests
are left out of a match, so `DIR/train*` means the shards. A shard's name is parsed by
`parse_shard_name`, which also takes the other usual extensions (.tfrecords, .tfr,
.record) of files written by other tools.

The schema check (`check_files`) reads the first record of every file: its keys and
their types, what it carries (annotation/kind: parts or boxes) and the vocabulary of its
part map. A pattern whose files disagree (parts and boxes where parts are needed, two
vocabularies) is refused naming the files. Records inside one file come from one
converter run and are not compared one by one.

TensorFlow is imported inside the functions that read or list files, so the
converter's worker processes can import this module without it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Optional

import numpy as np

from pipelines import records, schema, textfiles

SHARD_EXTENSION = ".tfrecord"
# Extensions a reader strips from a shard's name (files of other tools too).
READ_EXTENSIONS = (".tfrecords", ".tfrecord", ".tfr", ".record")
MANIFEST_SUFFIX = ".manifest.json"

# SPLIT-00000-of-00004[.ext]
_SHARD_RE = re.compile(r"^(?P<split>.+?)-(?P<index>\d{5,})-of-(?P<count>\d{5,})"
                       r"(?P<ext>\.[^-]*)?$")

# The `tf.train.Feature` kind each key must hold.
FEATURE_KINDS = {
    schema.KEY_IMAGE: "bytes_list",
    schema.KEY_ID: "bytes_list",
    schema.KEY_HEIGHT: "int64_list",
    schema.KEY_WIDTH: "int64_list",
    schema.KEY_BOXES: "float_list",
    schema.KEY_ANNOTATION: "bytes_list",
    schema.KEY_PERSON_MASK: "bytes_list",
    schema.KEY_PARTS_FINE: "bytes_list",
    schema.KEY_VOCABULARY: "bytes_list",
}


# === Names ===

def shard_name(split: str, index: int, num_shards: int) -> str:
    """File name of shard `index` of `num_shards`: SPLIT-00000-of-00004.tfrecord."""
    return "%s-%05d-of-%05d%s" % (split, index, num_shards, SHARD_EXTENSION)


def manifest_name(split: str) -> str:
    """File name of a split's manifest: SPLIT.manifest.json."""
    return split + MANIFEST_SUFFIX


def tmp_dir_name(split: str, pid: int) -> str:
    """The hidden directory a conversion of `split` writes into: .SPLIT.tmp-PID."""
    return f".{split}.tmp-{pid}"


def parse_shard_name(path: str):
    """(split, shard index, shard count) of a shard's path; index None if unsharded.

    DIR/val-00001-of-00004.tfrecord -> ("val", 1, 4); DIR/val.tfrecord -> ("val", None,
    1); the extensions of READ_EXTENSIONS are stripped.
    """
    name = os.path.basename(path)
    match = _SHARD_RE.match(name)
    if match:
        split, index, count = match["split"], int(match["index"]), int(match["count"])
    else:
        split, index, count = name, None, 1
    for ext in READ_EXTENSIONS:
        if split.endswith(ext):
            split = split[:-len(ext)]
            break
    return split, index, count


def split_name(files, file_pattern: str) -> str:
    """'val' for DIR/val-0000i-of-0000n.tfrecord; else a file-name-safe pattern basename."""
    names = {parse_shard_name(path)[0] for path in files}
    if len(names) == 1:
        name = names.pop()
    else:
        name = os.path.basename(file_pattern.split(",")[0].strip().rstrip("/"))
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "data"


def split_files(output_dir: str, split: str):
    """(finished shards, temporary files) of `split` in `output_dir`, by file name.

    Temporary: the hidden directories of conversions (.SPLIT.tmp-PID) and the hidden
    temporary files earlier versions wrote beside the shards.
    """
    import tensorflow as tf

    escaped = re.escape(split)
    shard_re = re.compile(rf"^{escaped}-\d{{5,}}-of-\d{{5,}}{re.escape(SHARD_EXTENSION)}$")
    tmp_re = re.compile(rf"^\.(?:{escaped}-\d{{5,}}-of-\d{{5,}}\.tfrecord|"
                        rf"{escaped}\.manifest\.json|{escaped})\.tmp-\d+$")
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(output_dir)]
    return ([n for n in names if shard_re.match(n)], [n for n in names if tmp_re.match(n)])


# === Listing ===

def list_files(file_pattern: str) -> list:
    """Sorted paths matching `file_pattern` (a glob or comma-separated globs).

    Manifests (`*.manifest.json`) are left out, so that `DIR/train*` means the shards.

    Raises:
      ValueError naming the pattern (and the part of it) that matches no file.
    """
    import tensorflow as tf

    if not isinstance(file_pattern, str) or not file_pattern.strip():
        raise ValueError(f"file pattern must be a non-empty string, got {file_pattern!r}")
    files = set()
    for part in (p.strip() for p in file_pattern.split(",")):
        if not part:
            continue
        matched = [p for p in tf.io.gfile.glob(part) if not p.endswith(MANIFEST_SUFFIX)]
        if not matched:
            where = "" if part == file_pattern.strip() else f" (in file pattern {file_pattern!r})"
            raise ValueError(f"no file matches {part!r}{where}")
        files.update(matched)
    if not files:
        raise ValueError(f"no file matches file pattern {file_pattern!r}")
    return sorted(files)


# === Manifests ===

def manifest_path(shard_path: str) -> str:
    """The manifest that describes a shard: DIR/SPLIT.manifest.json."""
    return os.path.join(os.path.dirname(shard_path),
                        manifest_name(parse_shard_name(shard_path)[0]))


def read_manifest(path: str) -> Optional[dict]:
    """The content of a manifest; None when there is none (or it is not an object).

    Raises ValueError naming the file when it exists but cannot be read or parsed.
    """
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    try:
        content = textfiles.read_json(path)
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e})") from None
    return content if isinstance(content, dict) else None


def write_manifest(output_dir: str, split: str, manifest: dict, *,
                   staging_dir: Optional[str] = None) -> str:
    """Writes `manifest` as OUTPUT_DIR/SPLIT.manifest.json, atomically; returns its path.

    The JSON is written into `staging_dir` (default: beside it, hidden) and renamed
    into place when complete, so a reader never sees half a manifest.
    """
    import tensorflow as tf

    final = os.path.join(output_dir, manifest_name(split))
    staging = staging_dir or output_dir
    tmp = os.path.join(staging, f".{manifest_name(split)}.tmp-{os.getpid()}")
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(manifest, indent=1) + "\n")
    tf.io.gfile.rename(tmp, final, overwrite=True)
    return final


def _ids_per_shard(content) -> dict | None:
    """{shard file name: ids} from a manifest of tools/make_tfrecords.py, else None.

    That manifest lists "shards" ([{"file", "examples": count}]) and "examples"
    ([{"id", ...}], shard 0's records first, then shard 1's, ...).
    """
    shards, examples = content.get("shards"), content.get("examples")
    if not isinstance(shards, list) or not isinstance(examples, list):
        return None
    try:
        ids = [str(e["id"]) for e in examples]
        counts = [int(s["examples"]) for s in shards]
        names = [str(s["file"]) for s in shards]
    except (KeyError, TypeError, ValueError):
        return None
    if sum(counts) != len(ids):
        return None
    starts = np.cumsum([0] + counts)
    return {name: ids[a:b] for name, a, b in zip(names, starts[:-1], starts[1:])}


def manifest_ids(files: list):
    """ids of `files` (in their order) from the manifests beside them, or None.

    `DIR/SPLIT.manifest.json` serves a shard of its split when it gives the ids of each
    shard ("shards" + "examples", as tools/make_tfrecords.py writes), or, with a plain
    "ids" list of the whole split, when `files` are all the shards of the split (the
    shard names `-0000i-of-0000n` tell). Anything else: None (the caller scans).
    """
    groups = {}  # (dir, split) -> [(path, shard index, shard count)] in file order
    for path in files:
        split, index, count = parse_shard_name(path)
        groups.setdefault((os.path.dirname(path), split), []).append((path, index, count))
    ids_of = {}  # path -> ids
    for (directory, split), members in groups.items():
        content = read_manifest(os.path.join(directory, manifest_name(split)))
        if content is None:
            return None
        per_shard = _ids_per_shard(content)
        if per_shard is not None:
            for path, _, _ in members:
                if os.path.basename(path) not in per_shard:
                    return None
                ids_of[path] = per_shard[os.path.basename(path)]
            continue
        counts = {count for _, _, count in members}
        indices = {index for _, index, _ in members}
        complete = indices == {None} or (
            len(counts) == 1 and indices == set(range(counts.pop())))
        if not complete or not isinstance(content.get("ids"), list):
            return None
        # The whole split's ids, in shard order: all on the first shard of the group.
        ids_of[members[0][0]] = [str(i) for i in content["ids"]]
        for path, _, _ in members[1:]:
            ids_of[path] = []
    return [i for path in files for i in ids_of[path]]


def scan_ids(files: list) -> list:
    """ids of every record of `files`, in file order, parsing the id feature only."""
    import tensorflow as tf

    spec = {schema.KEY_ID: tf.io.FixedLenFeature([], tf.string)}
    ds = tf.data.TFRecordDataset(files).batch(512)
    ds = ds.map(lambda s: tf.io.parse_example(s, spec)[schema.KEY_ID])
    return [i.decode("utf-8") for batch in ds.as_numpy_iterator() for i in batch]


def read_ids(file_pattern: str) -> list:
    """Image ids of the records matching `file_pattern`, in file order.

    Reads `SPLIT.manifest.json` beside the shards when it tells the ids of the matched
    files (see `manifest_ids`), else scans the records.
    """
    files = list_files(file_pattern)
    ids = manifest_ids(files)
    return ids if ids is not None else scan_ids(files)


# === The schema check ===

@dataclasses.dataclass(frozen=True)
class FileInfo:
    """What the first record of a file says.

    Attributes:
      path: the file.
      annotation: schema.ANNOTATION_PARTS or schema.ANNOTATION_BOXES.
      vocabulary: the `schema.Vocabulary` of its part map (None for box-only).
    """
    path: str
    annotation: str
    vocabulary: Optional[schema.Vocabulary]


def _named(vocabulary, path):
    """`vocabulary` with the name its manifest gives it (records carry names only)."""
    if vocabulary is None or vocabulary == schema.PASCAL_PART:
        return vocabulary
    try:
        content = read_manifest(manifest_path(path)) or {}
        recorded = schema.Vocabulary.from_json(content.get("vocabulary"))
    except (ValueError, TypeError):
        recorded = None
    if recorded is not None and recorded == vocabulary:
        return recorded
    return schema.Vocabulary(vocabulary.part_names, name=os.path.basename(path))


def inspect_file(path: str) -> FileInfo:
    """Reads the first record of `path` eagerly and checks its feature keys and types.

    Raises:
      ValueError naming the file: it cannot be read as TFRecords, holds no record, its
      first record is not a tf.train.Example, lacks keys of the schema (each named) or
      holds one of another type, or says an unknown annotation kind or vocabulary.
    """
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except (tf.errors.OpError, OSError) as e:
        raise ValueError(f"{path}: cannot read it as a TFRecord file: {e}") from None
    if first is None:
        raise ValueError(f"{path}: the file holds no record")
    try:
        example = example_pb2.Example.FromString(first.numpy())
    except Exception as e:  # protobuf's DecodeError
        raise ValueError(f"{path}: the first record is not a tf.train.Example ({e})") from None
    feature = example.features.feature
    try:
        annotation = records.annotation_of(feature)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    wanted = schema.REQUIRED_KEYS + (schema.PART_KEYS
                                     if annotation == schema.ANNOTATION_PARTS else ())
    missing = [k for k in wanted if k not in feature]
    if missing:
        raise ValueError(
            f"{path}: not a coseg_tf example (pipelines/schema.py): missing feature keys "
            f"{missing}; the record has {sorted(feature)}")
    mistyped = [f"{k} holds {feature[k].WhichOneof('kind')}, expected {kind}"
                for k, kind in FEATURE_KINDS.items()
                if k in feature and feature[k].WhichOneof("kind") != kind]
    if mistyped:
        raise ValueError(f"{path}: wrong feature types: {'; '.join(mistyped)}")
    try:
        vocabulary = records.vocabulary_of(feature)
    except (ValueError, UnicodeError) as e:
        raise ValueError(f"{path}: {schema.KEY_VOCABULARY}: {e}") from None
    return FileInfo(path=path, annotation=annotation, vocabulary=_named(vocabulary, path))


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What `check_files` found for a file pattern.

    Attributes:
      files: the matched files, sorted.
      infos: the `FileInfo` of each file, in that order.
      vocabulary: the one vocabulary of the files that carry parts (None if none does).
    """
    files: tuple
    infos: tuple
    vocabulary: Optional[schema.Vocabulary]

    @property
    def parts_files(self) -> tuple:
        return tuple(i.path for i in self.infos if i.annotation == schema.ANNOTATION_PARTS)

    @property
    def boxes_files(self) -> tuple:
        return tuple(i.path for i in self.infos if i.annotation == schema.ANNOTATION_BOXES)


def check_files(file_pattern: str, *, need_parts: bool = True) -> DataInfo:
    """The schema check of every file of a pattern (`inspect_file`), and their agreement.

    Args:
      file_pattern: a glob, or comma-separated globs.
      need_parts: refuse box-only files (a labeled pattern: training, validation and
        evaluation data); False takes both kinds (the unlabeled pool).

    Returns:
      The `DataInfo`.

    Raises:
      ValueError naming the pattern or the file: no file matches, a file fails the
      schema check, a box-only file where parts are needed, or files of two
      vocabularies (the first file of each named).
    """
    files = list_files(file_pattern)
    infos = [inspect_file(path) for path in files]
    if need_parts:
        boxes = [i.path for i in infos if i.annotation == schema.ANNOTATION_BOXES]
        if boxes:
            raise ValueError(
                f"{boxes[0]} carries no part labels (annotation/kind 'boxes', a box-only "
                f"conversion{f' like {len(boxes) - 1} other file(s)' if len(boxes) > 1 else ''})"
                ": labeled data must carry parts; box-only records can only be the "
                "unlabeled pool (train.py --unlabeled_data)")
    first_of = {}  # vocabulary -> the first file that has it
    for info in infos:
        if info.vocabulary is not None:
            first_of.setdefault(info.vocabulary, info)
    if len(first_of) > 1:
        listed = "; ".join(f"{i.path} has {i.vocabulary.describe()}"
                           for i in first_of.values())
        raise ValueError(f"the files of {file_pattern!r} have {len(first_of)} different "
                         f"part vocabularies and cannot be mixed: {listed}")
    vocabulary = next(iter(first_of.values())).vocabulary if first_of else None
    return DataInfo(files=tuple(files), infos=tuple(infos), vocabulary=vocabulary)
