r"""Makes the README's bring-your-own-data example set from the Pascal-Part fixtures.

    python tools/make_example_set.py --fixtures_dir=../shared/fixtures/pascal_part \
        --output_dir=own

writes what a user of a Pascal-Person-Part-style dataset and a person detector has on
disk, the inputs of the README's "Your own data" commands:

  own/
    images/ID.jpg             the fixtures with persons: the photo (copied as is)
    labels/ID.png             its Pascal-Person-Part label map: a palette PNG whose
                              value is the class of the `person_part6` scheme
                              (pipelines/schema.py; 0 background, 1 head, 2 torso,
                              3 upper_arms, 4 lower_arms, 5 upper_legs, 6 lower_legs);
                              person pixels no part covers are 0, as in the published
                              maps (Chen et al., CVPR 2016)
    train.txt, val.txt        the first --num_train of those ids (sorted) and the rest
    photos/ID.jpg             every fixture photo, with persons or not: the unlabeled pool
    detections.json           COCO-format detection results as a person detector writes
                              them: each person's tight box at score 0.9 and, on every
                              photo, one junk box (the top-left quarter) at score 0.12
    head_body_arms_legs.json  a JSON part scheme merging the six classes into four
    new/                      the last three photos with persons, two as JPEG and one
                              as PNG: new photos for predict.py

The label maps and boxes come from the `.mat` annotations through the converter's own
reader (`tools.pascal_part`). Nothing here imports TensorFlow.

Errors (exit code 1, as the converter's): an existing --output_dir is refused (nothing
of it is touched); a --fixtures_dir that is not a directory, has no `.mat` + `.jpg`
pair or fewer than --num_train + 1 images with persons, or holds a `.mat` file that
cannot be read, is named. The set is written to a temporary directory beside
--output_dir and renamed into place when complete.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import tempfile

import numpy as np
from absl import app, flags
from PIL import Image, ImageOps

from coseg_tf import visualize
from pipelines import schema
from tools import pascal_part

SCHEME = "person_part6"
SCORE = 0.9          # a detected person
JUNK_SCORE = 0.12    # under the converter's default --min_score (0.5)
NUM_NEW = 3          # photos for predict.py: the last NUM_NEW - 1 JPEG, one PNG

# The README's four-class scheme over the six Pascal-Person-Part classes.
FOUR_CLASSES = {"name": "ppp4",
                "classes": [{"name": "head", "parts": ["head"]},
                            {"name": "body", "parts": ["torso"]},
                            {"name": "arms", "parts": ["upper_arms", "lower_arms"]},
                            {"name": "legs", "parts": ["upper_legs", "lower_legs"]}],
                "other_region": False}


class ExampleSetError(ValueError):
    """A bad --fixtures_dir or --output_dir, named in the message."""


def _persons(mat_path):
    """(label map uint8 (H, W) in person_part6 classes, [COCO box [x, y, w, h]])."""
    objects = pascal_part.read_objects(mat_path)
    persons = [o for o in objects if o.class_name == schema.PERSON_CLASS]
    if not persons:
        return None, []
    height, width = persons[0].mask.shape
    _, parts_fine = pascal_part.paint(persons, height, width)
    labels = schema.get_scheme(SCHEME).lookup_table()[parts_fine]
    boxes = []
    for obj in persons:
        rows, cols = np.nonzero(obj.mask)
        if rows.size:
            boxes.append([int(cols.min()), int(rows.min()),
                          int(cols.max() + 1 - cols.min()), int(rows.max() + 1 - rows.min())])
    return labels, boxes


def make_example_set(fixtures_dir: str, output_dir: str, num_train: int = 6) -> dict:
    """Writes the example set (module docstring) to `output_dir`; returns its counts.

    Raises:
      ExampleSetError: `output_dir` exists, or `fixtures_dir` has no `.mat` + `.jpg`
        pair, or fewer than `num_train` + 1 of its images have persons.
      tools.source_images.BadInputError: a `.mat` file that cannot be read (named).
    """
    if os.path.lexists(output_dir):
        raise ExampleSetError(f"--output_dir={output_dir} exists; give a new directory "
                              "(nothing in it was touched)")
    if not os.path.isdir(fixtures_dir):
        raise ExampleSetError(f"--fixtures_dir={fixtures_dir} is not a directory")
    ids = sorted(os.path.splitext(os.path.basename(p))[0]
                 for p in glob.glob(os.path.join(fixtures_dir, "*.mat"))
                 if os.path.exists(os.path.splitext(p)[0] + ".jpg"))
    if not ids:
        raise ExampleSetError(f"--fixtures_dir={fixtures_dir}: no ID.mat + ID.jpg pair "
                              "(Pascal-Part annotations beside their VOC photos)")
    colors = visualize.class_colors(schema.get_scheme(SCHEME).class_names)
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(colors)] = colors
    labeled, detections = [], []
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-example-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would become the set's own mode
    try:
        for sub in ("images", "labels", "photos", "new"):
            os.makedirs(os.path.join(tmp, sub))
        for image_id in ids:
            jpeg = os.path.join(fixtures_dir, image_id + ".jpg")
            shutil.copyfile(jpeg, os.path.join(tmp, "photos", image_id + ".jpg"))
            labels, boxes = _persons(os.path.join(fixtures_dir, image_id + ".mat"))
            detections += [{"image_id": image_id, "category_id": 1, "bbox": box,
                            "score": SCORE} for box in boxes]
            with Image.open(jpeg) as im:
                width, height = im.size
            detections.append({"image_id": image_id, "category_id": 1,
                               "bbox": [0, 0, width // 4, height // 4], "score": JUNK_SCORE})
            if labels is None:
                continue
            labeled.append(image_id)
            shutil.copyfile(jpeg, os.path.join(tmp, "images", image_id + ".jpg"))
            png = Image.fromarray(labels)  # mode L; putpalette makes it P, values kept
            png.putpalette(palette.reshape(-1).tolist())
            png.save(os.path.join(tmp, "labels", image_id + ".png"))
        if len(labeled) <= num_train:
            raise ExampleSetError(
                f"--fixtures_dir={fixtures_dir}: {len(labeled)} images with persons, "
                f"--num_train={num_train} needs at least {num_train + 1} (one for val)")
        splits = {"train": labeled[:num_train], "val": labeled[num_train:]}
        for split, split_ids in splits.items():
            with open(os.path.join(tmp, f"{split}.txt"), "w") as f:
                f.write("".join(i + "\n" for i in split_ids))
        with open(os.path.join(tmp, "detections.json"), "w") as f:
            json.dump(detections, f, indent=1)
        with open(os.path.join(tmp, "head_body_arms_legs.json"), "w") as f:
            json.dump(FOUR_CLASSES, f, indent=1)
        new = labeled[-NUM_NEW:]
        for image_id in new[:-1]:
            shutil.copyfile(os.path.join(fixtures_dir, image_id + ".jpg"),
                            os.path.join(tmp, "new", image_id + ".jpg"))
        with Image.open(os.path.join(fixtures_dir, new[-1] + ".jpg")) as im:
            ImageOps.exif_transpose(im).convert("RGB").save(os.path.join(tmp, "new", new[-1] + ".png"))
        os.rename(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"photos": len(ids), "labeled": len(labeled), "train": num_train,
            "val": len(labeled) - num_train,
            "person_boxes": sum(d["score"] == SCORE for d in detections),
            "junk_boxes": len(ids), "new": len(new)}


def define_flags(flag_values=flags.FLAGS):
    flags.DEFINE_string("fixtures_dir", "../shared/fixtures/pascal_part",
                        "Pascal-Part annotations (ID.mat) beside their photos (ID.jpg).",
                        flag_values=flag_values)
    flags.DEFINE_string("output_dir", "own", "Where the set goes; must not exist.",
                        flag_values=flag_values)
    flags.DEFINE_integer("num_train", 6, "Images with persons in train.txt (sorted ids); "
                         "the rest go to val.txt.", lower_bound=1, flag_values=flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    try:
        counts = make_example_set(f.fixtures_dir, f.output_dir, f.num_train)
    except (ExampleSetError, pascal_part.BadInputError) as e:
        print(f"make_example_set: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {f.output_dir}: {counts['labeled']} labeled images ({counts['train']} "
          f"train, {counts['val']} val), {counts['photos']} photos with "
          f"{counts['person_boxes']} person boxes and {counts['junk_boxes']} junk boxes, "
          f"{counts['new']} new photos")
    return 0


def run():
    from coseg_tf import cli

    define_flags()
    cli.run_program(main, sys.modules[__name__], "make_example_set.py",
                    description=__doc__)


if __name__ == "__main__":
    run()
