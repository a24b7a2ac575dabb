r"""Converts images and their annotations into coseg_tf TFRecords, from one of three sources.

--source (tools/sources.py) says what the inputs are:

  pascal_part (default): Pascal VOC images + Pascal-Part annotations
    VOCdevkit/VOC2010/
    ├── JPEGImages/        --images_dir           ID.jpg (the image, copied as is)
    └── Annotations/       --voc_annotations_dir  ID.xml (optional: person boxes)
    trainval/Annotations_Part/
    └── ID.mat             --pascal_part_dir      the Pascal-Part annotation of ID
  label_png: images + PNG label maps (Pascal-Person-Part's usual release, LIP, CIHP,
  ATR, your own), tools/label_png.py
    images/ID.jpg          --images_dir
    labels/ID.png          --labels_dir           palette or grey PNG, value = label
    vocabulary.txt         --vocabulary           the name of each value, from 0
    [--voc_annotations_dir or --coco_file]        optional person boxes; default one
                                                  box per connected labeled region
  boxes_only: images + person boxes, no part labels (the unlabeled pool),
  tools/boxes_only.py
    photos/ID.jpg          --images_dir
    --voc_annotations_dir or --coco_file [--min_score]   the boxes: VOC XML, a COCO
                           instances file (crowds skipped and counted) or COCO-format
                           detection results (boxes under --min_score dropped and
                           counted); an image left without a box is skipped, counted
  train_id.txt             --split_list           optional (every source): one id a
                                                  line; without it every ID.mat, ID.png
                                                  label map or image, sorted

Output (--output_dir), for --split_name=train --num_shards=4 (names:
`pipelines.dataset_files`):

  train-00000-of-00004.tfrecord
  ...
  train-00003-of-00004.tfrecord
  train.manifest.json      schema version, the source and what its records carry
                           ("annotation": parts or boxes), the vocabulary, counts (what
                           was written, skipped and why, dropped crowds and scores), the
                           written ids in shard order with their person counts, each
                           skipped id and why, the box source, the inputs and arguments

Each record is a `tf.train.Example` written by `pipelines.records.make_example` (the one
format of `pipelines/schema.py`) with the feature keys:

  image/encoded     bytes    the original JPEG bytes; for a JPEG whose EXIF Orientation
                             tag is 2..8, the upright image re-encoded (same quantization)
  image/id          bytes    image id, e.g. b"2008_000652"
  image/height      int64
  image/width       int64
  human/boxes       float[]  N x 4 flattened, normalized (ymin, xmin, ymax, xmax)
  annotation/kind   bytes    b"parts" (pascal_part, label_png) or b"boxes" (boxes_only)
  and for b"parts" only:
  person/mask       bytes    PNG, uint8, 0 = no person, k = k-th person (pascal_part: the
                             k-th person object in file order; label_png: the k-th
                             connected labeled region)
  parts/fine        bytes    PNG, uint8, 0 = no part, i = the i-th vocabulary name
                             (pascal_part: the person objects' parts painted in file
                             order, a later part over an earlier one, parts of other
                             objects ignored; label_png: the PNG's values as they are)
  parts/vocabulary  bytes[]  the vocabulary (pascal_part: schema.PART_NAMES)

Boxes (pixel i covers [i, i + 1)):
- pascal_part without a box file: one box per person object, the tight box of its mask,
  (rmin / H, cmin / W, (rmax + 1) / H, (cmax + 1) / W); label_png without one: the tight
  box of each connected labeled region (persons who touch share one);
- VOC XML: every <object> named "person" of ID.xml; VOC boxes are 1-based and
  inclusive, so ((ymin - 1) / H, (xmin - 1) / W, ymax / H, xmax / W), clipped to [0, 1];
- COCO: bbox [x, y, w, h] -> (y / H, x / W, (y + h) / H, (x + w) / W), clipped.

Orientation: annotations refer to the upright image a viewer shows. A JPEG whose EXIF
Orientation tag is 2..8 is turned upright (the pipeline's tf.io.decode_jpeg ignores
EXIF) and its masks must have the upright size; the manifest lists the tag of each
such example ("exif_orientation"). Any file that starts with the JPEG marker FF D8 FF
is a JPEG (Pillow calls some "MPO"); every image is decoded once by the pipeline's own
decoder (pipelines.decode.check_jpeg) before it is written, so what the converter
accepts is what the training pipeline reads.

Images without a person are skipped ("no person": no person object, an all-0 label
map, no person box). Bad input (a missing, empty, corrupt or truncated JPEG, or one
TensorFlow cannot decode; an image in another format, such as a PNG photo: the records
hold JPEGs; a missing, truncated or malformed .mat; a mask or label map whose size
differs from the image; an unknown person part name; a label value the vocabulary does
not name; a colour PNG as a label map; an id with no files; a broken XML; an image a
COCO instances file does not list; a file name that is not UTF-8; an image of more than
--max_pixels pixels, 25 megapixels by default, checked from the JPEG header before
anything large is read) is skipped and listed in the manifest with the message naming
the file and the problem
(--on_error=skip), or stops the run with exit code 1 and no output files
(--on_error=fail).

Shards are filled round-robin in id order (the j-th written example goes to shard
j % num_shards), so the same input gives byte-identical shards whatever --num_workers.
No shard is ever empty (the readers refuse a file without records): with fewer
examples than --num_shards, each example gets its own shard (3 examples for
--num_shards=4 give train-0000{0,1,2}-of-00003; the manifest records both counts), and
a split of which every id was skipped is an error that writes nothing.
Shards are written into a temporary directory (.train.tmp-PID/) and renamed into
place when all are complete; the manifest comes last. A run killed at any moment
leaves no file with a shard's name that is not complete, and no partial file that a
glob like DIR/* would match (it matches the directory, which no reader opens as a
shard). Stale temporary files of the split (from a killed run) are removed at the start; shards of the split with another
shard count are removed only once the new set is complete. Outputs of other splits are
never touched. Output goes through `tf.io.gfile`, so --output_dir may be gs://...; the
inputs are read by worker processes without TensorFlow and must be local.

Usage (README, "Your own data", for the other sources):
  python -m tools.make_tfrecords \
    --pascal_part_dir=trainval/Annotations_Part \
    --images_dir=VOCdevkit/VOC2010/JPEGImages \
    --voc_annotations_dir=VOCdevkit/VOC2010/Annotations \
    --split_list=pascal_person_part/train_id.txt --split_name=train \
    --output_dir=data/pascal_person_part --num_shards=8 --num_workers=4
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import multiprocessing
import os
import re
import sys
import time

from absl import app
from absl import flags
from absl import logging

from pipelines import dataset_files
from pipelines import records
from pipelines import schema
from tools import source_images
from tools import sources
from tools.source_images import BadInputError  # re-exported: convert raises it

TOOL_NAME = "tools/make_tfrecords.py"
TOOL_VERSION = "1.0"
ON_ERROR_CHOICES = ("skip", "fail")
_SPLIT_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

__all__ = ["convert", "main", "run", "define_flags", "ArgumentError", "BadInputError",
           "shard_name", "manifest_name"]

# The argument error of every source; the names of the files are dataset_files'.
ArgumentError = sources.ArgumentError
shard_name = dataset_files.shard_name
manifest_name = dataset_files.manifest_name


# === Arguments ===

def _resolve_arguments(*, source, output_dir, split_name, num_shards, num_workers,
                       on_error, max_pixels, **given):
    """Checked, normalized arguments and the source's `sources.Plan`; ArgumentError
    otherwise (the common flags first, then the source's, then its ids)."""
    args = {"source": source}
    if not output_dir:
        raise ArgumentError("--output_dir: required")
    args["output_dir"] = os.fspath(output_dir)
    if not isinstance(split_name, str) or not _SPLIT_NAME_RE.match(split_name):
        raise ArgumentError(f"--split_name: {split_name!r} is not a usable file-name prefix "
                            "(letters, digits, '_', '-', '.'; not starting with '.' or '-')")
    args["split_name"] = split_name
    for flag, value in (("num_shards", num_shards), ("num_workers", num_workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArgumentError(f"--{flag}: must be an integer >= 1, got {value!r}")
        args[flag] = value
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0:
        raise ArgumentError(f"--max_pixels: must be an integer >= 0 (0 = no limit), "
                            f"got {max_pixels!r}")
    args["max_pixels"] = max_pixels
    if on_error not in ON_ERROR_CHOICES:
        raise ArgumentError(f"--on_error: must be one of {', '.join(ON_ERROR_CHOICES)}, "
                            f"got {on_error!r}")
    args["on_error"] = on_error
    args.update(sources.resolve(source, given))
    plan = sources.make_plan(source, args, max_pixels)
    return args, plan


# === Output files ===

def _remove_quietly(gfile, path: str) -> None:
    try:
        if gfile.isdir(path):
            gfile.rmtree(path)
        else:
            gfile.remove(path)
    except Exception as e:  # cleanup must not hide the error that caused it
        logging.warning("could not remove %s: %s", path, e)


# === Progress ===

class _Progress:
    """A one-line progress bar with a rate on stderr (a plain line now and then off a tty).

    Args:
      total: the number of ids to process.
      label: shown before the counts.
      enabled: False prints nothing.
    """

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total = total
        self.label = label
        self.enabled = enabled
        self.start = time.monotonic()
        self.tty = enabled and sys.stderr.isatty()
        self.interval = 0.2 if self.tty else 10.0
        self.last = -float("inf")

    def update(self, done: int, written: int, skipped: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self.last < self.interval:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        width = 30
        filled = int(width * done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        line = (f"{self.label} [{bar}] {done}/{self.total} images, {rate:.1f} images/s, "
                f"written {written}, skipped {skipped}, "
                + (f"{elapsed:.1f}s" if final else f"ETA {eta:.0f}s"))
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


# === Conversion ===

@contextlib.contextmanager
def _outcomes(tasks, num_workers: int, fn):
    """Iterator over the outcomes of `fn(image_id, **arguments)` for each task of
    `tasks` ([(image_id, arguments)], a `sources.Plan`'s), in their order.

    With num_workers > 1 the images are read by a process pool started with 'spawn';
    the workers import only NumPy, SciPy and PIL (never TensorFlow). Results are taken
    in id order from a window of at most 4 tasks per worker ahead of the writer, so
    what is written does not depend on scheduling and memory stays bounded. A worker
    that dies (killed, out of memory) raises BrokenProcessPool instead of hanging.
    Leaving the context cancels what has not started and waits for the rest.
    """
    num_workers = min(num_workers, len(tasks))
    if num_workers <= 1:
        yield (fn(image_id, **arguments) for image_id, arguments in tasks)
        return
    ctx = multiprocessing.get_context("spawn")
    executor = concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=ctx)

    def ordered():
        window = collections.deque()
        pending = iter(tasks)
        for image_id, arguments in itertools.islice(pending, 4 * num_workers):
            window.append(executor.submit(fn, image_id, **arguments))
        while window:
            outcome = window.popleft().result()
            for image_id, arguments in itertools.islice(pending, 1):
                window.append(executor.submit(fn, image_id, **arguments))
            yield outcome

    try:
        yield ordered()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def convert(*, pascal_part_dir=None, images_dir=None, output_dir=None, split_name="train",
            voc_annotations_dir=None, split_list=None, num_shards=1, num_workers=1,
            on_error="skip", progress=True,
            max_pixels=source_images.DEFAULT_MAX_PIXELS, source="pascal_part",
            labels_dir=None, vocabulary=None, coco_file=None, min_score=None) -> dict:
    """Converts one split to shards + a manifest in output_dir (`dataset_files` names).

    Args:
      pascal_part_dir: pascal_part: directory of the Pascal-Part `ID.mat` files.
      images_dir: directory of the `ID.jpg` images (every source).
      output_dir: where shards and manifest go (created; any `tf.io.gfile` path).
      split_name: file-name prefix of the shards and manifest.
      voc_annotations_dir: optional directory of VOC `ID.xml` files: the person boxes
        (pascal_part: instead of the tight boxes of the person masks; label_png:
        instead of one box per labeled region; boxes_only: one box file is required).
      split_list: optional file of ids, one a line; default every `.mat` (pascal_part),
        every `.png` label map (label_png) or every image (boxes_only), sorted.
      num_shards: number of output shards (>= 1); fewer when fewer examples are
        written (one each: no shard is empty).
      num_workers: processes reading images (1 = in this process).
      on_error: "skip" records bad input in the manifest and goes on; "fail" raises
        BadInputError and leaves no output file of this run.
      progress: show a progress bar on stderr.
      max_pixels: images with more pixels are bad input (0 = no limit); checked from
        the JPEG header, before the image or its annotations are read.
      source: "pascal_part", "label_png" or "boxes_only" (`tools/sources.py`).
      labels_dir: label_png: directory of the `ID.png` label maps.
      vocabulary: label_png: the vocabulary file naming the label values
        (`pipelines.schema.read_vocabulary`).
      coco_file: label_png, boxes_only: person boxes from a COCO instances file or
        COCO-format detection results (`pipelines.boxes.read_coco`).
      min_score: with coco_file: boxes with a lower "score" are dropped and counted;
        None = sources.DEFAULT_MIN_SCORE.

    Returns:
      The manifest (the dict written to SPLIT.manifest.json).

    Raises:
      ArgumentError: a bad argument, before any work (the message names the flag).
      BadInputError: with on_error="fail", the first bad input (naming file and problem);
        whatever on_error, when no example is left to write (nothing is written).
    """
    arguments = dict(source=source, pascal_part_dir=pascal_part_dir, images_dir=images_dir,
                     labels_dir=labels_dir, vocabulary=vocabulary,
                     voc_annotations_dir=voc_annotations_dir, coco_file=coco_file,
                     min_score=min_score, output_dir=output_dir, split_name=split_name,
                     split_list=split_list, num_shards=num_shards, num_workers=num_workers,
                     on_error=on_error, progress=progress, max_pixels=max_pixels)
    arguments = {k: (os.fspath(v) if isinstance(v, os.PathLike) else v)
                 for k, v in arguments.items()}
    args, plan = _resolve_arguments(**{k: v for k, v in arguments.items()
                                       if k != "progress"})
    ids = [image_id for image_id, _ in plan.tasks]

    import tensorflow as tf  # lazy: the parent alone needs it (writer, gfile, make_example)

    gfile = tf.io.gfile
    out_dir = args["output_dir"]
    if gfile.exists(out_dir) and not gfile.isdir(out_dir):
        raise ArgumentError(f"--output_dir: {out_dir} exists and is not a directory")
    created_dir = not gfile.exists(out_dir)
    gfile.makedirs(out_dir)
    split = args["split_name"]
    _, stale = dataset_files.split_files(out_dir, split)
    for name in stale:
        logging.warning("removing stale temporary output %s of an interrupted run",
                        os.path.join(out_dir, name))
        _remove_quietly(gfile, os.path.join(out_dir, name))

    num_shards = args["num_shards"]
    finals = [shard_name(split, i, num_shards) for i in range(num_shards)]
    tmp_dir = os.path.join(out_dir, dataset_files.tmp_dir_name(split, os.getpid()))
    tmps = [os.path.join(tmp_dir, name) for name in finals]
    shard_ids = [[] for _ in range(num_shards)]  # manifest entries, per shard
    skipped = []
    done = written = 0
    bar = _Progress(len(ids), f"[{split}]", enabled=progress)
    writers = []
    completed = False
    try:
        gfile.makedirs(tmp_dir)
        writers = [tf.io.TFRecordWriter(path) for path in tmps]
        with _outcomes(plan.tasks, args["num_workers"], plan.convert_one) as outcomes:
            for outcome in outcomes:
                done += 1
                if isinstance(outcome, source_images.Converted):
                    outcome = _decodable(outcome)
                if isinstance(outcome, source_images.Skipped):
                    if outcome.kind == source_images.BAD_INPUT:
                        if args["on_error"] == "fail":
                            raise BadInputError(outcome.reason)
                        logging.warning("skipping %s: %s", outcome.image_id, outcome.reason)
                    skipped.append({"id": outcome.image_id, "kind": outcome.kind,
                                    "reason": outcome.reason})
                else:
                    shard = written % num_shards  # round-robin in id order
                    writers[shard].write(records.make_example(
                        jpeg=outcome.jpeg, image_id=outcome.image_id, height=outcome.height,
                        width=outcome.width, boxes=outcome.boxes,
                        person_mask=outcome.person_mask, parts_fine=outcome.parts_fine,
                        vocabulary=plan.vocabulary or schema.PASCAL_PART))
                    entry = {"id": outcome.image_id, "persons": outcome.num_persons,
                             "boxes": len(outcome.boxes), "shard": shard}
                    if outcome.orientation != 1:  # turned upright and re-encoded
                        entry["exif_orientation"] = outcome.orientation
                    shard_ids[shard].append(entry)
                    written += 1
                bar.update(done, written, len(skipped))
        for writer in writers:
            writer.close()
        if not written:
            raise BadInputError(
                f"no example to write: all {len(ids)} ids were skipped (no person: "
                f"{sum(s['kind'] == source_images.NO_PERSON for s in skipped)}, bad input: "
                f"{sum(s['kind'] == source_images.BAD_INPUT for s in skipped)}); a split "
                "without examples cannot be read, so nothing was written")
        # Never an empty shard (the readers refuse a file without records): with fewer
        # examples than --num_shards, one shard per example. Round-robin put example j
        # in shard j, so the first `written` shards are those of --num_shards=written.
        if written < num_shards:
            logging.warning("%d examples for --num_shards=%d: writing %d shards (every "
                            "shard holds at least one example)", written, num_shards,
                            written)
            for path in tmps[written:]:
                gfile.remove(path)
            finals = [shard_name(split, i, written) for i in range(written)]
            for i, name in enumerate(finals):
                gfile.rename(tmps[i], os.path.join(tmp_dir, name), overwrite=True)
            shard_ids = shard_ids[:written]
        completed = True
    finally:
        if not completed:  # an error or an interrupt: leave no file of this run
            for writer in writers:
                with contextlib.suppress(Exception):
                    writer.close()
            if gfile.exists(tmp_dir):
                _remove_quietly(gfile, tmp_dir)
            if created_dir and not gfile.listdir(out_dir):
                with contextlib.suppress(Exception):
                    gfile.rmtree(out_dir)

    bar.update(done, written, len(skipped), final=True)

    manifest = _manifest(args, arguments, plan, finals, shard_ids, skipped)
    _publish(gfile, out_dir, split, tmp_dir, finals, manifest)

    counts = manifest["counts"]
    summary = (f"wrote {counts['written']} examples in {len(finals)} shards to {out_dir}; "
               f"skipped {counts['skipped']} (no person: {counts['skipped_no_person']}, "
               f"bad input: {counts['skipped_bad_input']})")
    if progress:  # the tool's own last line, beside its progress bar
        print(summary, file=sys.stderr, flush=True)
    else:
        logging.info(summary)
    return manifest


def _decodable(outcome):
    """`outcome`, or a BAD_INPUT `Skipped` when the training pipeline cannot read its image.

    The image bytes are decoded here by the pipeline's own decoder
    (`pipelines.decode.check_jpeg`, TensorFlow), in the parent: what the converter
    writes is exactly what tf.data will decode, at the size the masks have.
    """
    from pipelines import decode  # imports TensorFlow: the parent only

    try:
        size = decode.check_jpeg(outcome.jpeg)
    except ValueError as e:
        reason = f"{outcome.image_path}: corrupt or truncated JPEG: {e}"
        return source_images.Skipped(outcome.image_id, source_images.BAD_INPUT, reason)
    if size != (outcome.height, outcome.width):
        reason = (f"{outcome.image_path}: TensorFlow decodes it as {size[0]}x{size[1]} "
                  f"(HxW), Pillow's header says {outcome.height}x{outcome.width}")
        return source_images.Skipped(outcome.image_id, source_images.BAD_INPUT, reason)
    return outcome


def _manifest(args, arguments, plan, finals, shard_ids, skipped) -> dict:
    try:
        from importlib.metadata import version
        package_version = version("coseg_tf")
    except Exception:  # not installed: run from a checkout
        package_version = None
    examples = [entry for shard in shard_ids for entry in shard]
    no_person = sum(s["kind"] == source_images.NO_PERSON for s in skipped)
    has_parts = plan.annotation == schema.ANNOTATION_PARTS
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "split": args["split_name"],
        "source": args["source"],
        # What every record carries: parts (part map, instance mask, boxes) or boxes.
        "annotation": plan.annotation,
        "counts": {
            "ids": len(examples) + len(skipped),
            "written": len(examples),
            "turned_upright": sum("exif_orientation" in e for e in examples),
            "persons": sum(e["persons"] for e in examples),
            "skipped": len(skipped),
            "skipped_no_person": no_person,
            "skipped_bad_input": len(skipped) - no_person,
            **plan.counts,
        },
        "num_shards": len(finals),
        "requested_num_shards": args["num_shards"],
        "shards": [{"file": name, "examples": len(ids)}
                   for name, ids in zip(finals, shard_ids)],
        "examples": examples,  # in shard order: shard 0's records, then shard 1's, ...
        "skipped": skipped,
        "feature_keys": list(schema.FEATURE_KEYS if has_parts else schema.BOXES_FEATURE_KEYS),
        # The vocabulary of parts/fine: value i is part_names[i - 1] (every record
        # also names it); none for box-only records.
        "vocabulary": plan.vocabulary.to_json() if plan.vocabulary else None,
        "part_names": list(plan.vocabulary.part_names) if plan.vocabulary else None,
        "box_source": plan.box_source,
        "sources": plan.sources,
        "arguments": arguments,
        "created_by": {"tool": TOOL_NAME, "tool_version": TOOL_VERSION,
                       "coseg_tf_version": package_version},
    }


def _publish(gfile, out_dir, split, tmp_dir, finals, manifest) -> None:
    """Renames the complete shards of `tmp_dir` into place, then writes the manifest."""
    manifest_path = os.path.join(out_dir, manifest_name(split))
    old_shards, _ = dataset_files.split_files(out_dir, split)
    if gfile.exists(manifest_path):  # the old manifest no longer describes the shards
        gfile.remove(manifest_path)
    for final in finals:
        gfile.rename(os.path.join(tmp_dir, final), os.path.join(out_dir, final),
                     overwrite=True)
    for name in sorted(set(old_shards) - set(finals)):  # another shard count
        logging.info("removing %s of an earlier run with another shard count", name)
        gfile.remove(os.path.join(out_dir, name))
    dataset_files.write_manifest(out_dir, split, manifest, staging_dir=tmp_dir)
    _remove_quietly(gfile, tmp_dir)


# === Command line ===

def define_flags(flag_values=flags.FLAGS) -> None:
    """Defines this tool's flags. `run()` calls it, so importing the module defines none."""
    fv = dict(flag_values=flag_values)
    # --- Source (tools/sources.py) ---
    flags.DEFINE_enum("source", "pascal_part", list(sources.SOURCES),
                      "What the inputs are: " + "; ".join(
                          f"{s.name}: {s.summary}" for s in sources.SOURCES.values()) + ".",
                      **fv)
    # --- Inputs ---
    flags.DEFINE_string("pascal_part_dir", None, "pascal_part: directory of the "
                        "Pascal-Part ID.mat files (Annotations_Part).", **fv)
    flags.DEFINE_string("images_dir", None, "Directory of the ID.jpg images (e.g. "
                        "VOCdevkit/VOC2010/JPEGImages).", **fv)
    flags.DEFINE_string("labels_dir", None, "label_png: directory of the ID.png label "
                        "maps (palette or grey PNG, pixel value = label).", **fv)
    flags.DEFINE_string("vocabulary", None, "label_png: file naming the label values, "
                        "one name a line from value 0 (the background), or JSON (a list, "
                        "or {\"0\": \"background\", \"1\": ...}).", **fv)
    flags.DEFINE_string("voc_annotations_dir", None,
                        "Directory of VOC ID.xml files: the person boxes. pascal_part "
                        "default: the tight boxes of the person masks; label_png "
                        "default: one box per labeled region.", **fv)
    flags.DEFINE_string("coco_file", None,
                        "label_png, boxes_only: person boxes from a COCO instances file "
                        "(crowd annotations skipped and counted) or COCO-format detection "
                        "results (a list with scores; image_id = the image's file stem).",
                        **fv)
    flags.DEFINE_float("min_score", None, "With --coco_file: boxes whose score is lower "
                       f"are dropped and counted (default {sources.DEFAULT_MIN_SCORE}).",
                       **fv)
    flags.DEFINE_string("split_list", None, "Optional file of image ids, one a line "
                        "(e.g. the Pascal-Person-Part train list). Default: every .mat "
                        "(pascal_part), .png label map (label_png) or image (boxes_only).",
                        **fv)
    # --- Outputs ---
    flags.DEFINE_string("split_name", "train", "Prefix of the shard and manifest names.", **fv)
    flags.DEFINE_string("output_dir", None, "Where the shards and the manifest go.", **fv)
    flags.DEFINE_integer("num_shards", 1, "Number of TFRecord shards.", **fv)
    # --- Running ---
    flags.DEFINE_integer("num_workers", 1, "Processes reading images (1 = no pool).", **fv)
    flags.DEFINE_enum("on_error", "skip", list(ON_ERROR_CHOICES),
                      "Bad input: 'skip' lists it in the manifest and goes on; 'fail' "
                      "stops with exit code 1 and leaves no output.", **fv)
    flags.DEFINE_integer("max_pixels", source_images.DEFAULT_MAX_PIXELS,
                         "Images with more pixels (width x height) are skipped as bad "
                         "input, before they are decoded; 0 = no limit.", **fv)
    flags.DEFINE_boolean("progress", True, "Show a progress bar on stderr.", **fv)
    flags.mark_flags_as_required(["output_dir"], flag_values=flag_values)


def main(argv) -> int:
    """Runs `convert` from the parsed flags; 1 with the message on bad flags or input."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    try:
        convert(source=f.source, pascal_part_dir=f.pascal_part_dir, images_dir=f.images_dir,
                labels_dir=f.labels_dir, vocabulary=f.vocabulary,
                voc_annotations_dir=f.voc_annotations_dir, coco_file=f.coco_file,
                min_score=f.min_score, output_dir=f.output_dir, split_name=f.split_name,
                split_list=f.split_list, num_shards=f.num_shards,
                num_workers=f.num_workers, on_error=f.on_error, progress=f.progress,
                max_pixels=f.max_pixels)
    except (ArgumentError, BadInputError) as e:
        print(f"make_tfrecords: error: {e}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """Console entry point (coseg-make-tfrecords)."""
    from coseg_tf import cli

    if "pascal_part_dir" not in flags.FLAGS:
        define_flags()
    cli.run_program(main, sys.modules[__name__], "coseg-make-tfrecords",
                    description=__doc__)


if __name__ == "__main__":
    run()
