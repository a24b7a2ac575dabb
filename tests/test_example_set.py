"""tools/make_example_set.py: the README's example set from the shared fixtures.

Expected label maps and boxes come from the tests' own reader of the `.mat` files
(pipeline_helpers), not from the converter's.
"""

import json
import os

import numpy as np
import pytest
import scipy.io
from PIL import Image

import pipeline_helpers as ph
from pipelines import schema
from tools.make_example_set import ExampleSetError, make_example_set
from tools.make_tfrecords import convert


@pytest.fixture(scope="module")
def example_set(pascal_part_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("example") / "own"
    counts = make_example_set(str(pascal_part_dir), str(out), num_train=6)
    return out, counts


def _own_boxes(mat_path):
    """COCO [x, y, w, h] of each person object's own mask, in file order."""
    boxes = []
    for obj in scipy.io.loadmat(str(mat_path))["anno"][0, 0]["objects"][0]:
        if str(obj["class"][0]) == schema.PERSON_CLASS:
            rows, cols = np.nonzero(obj["mask"])
            boxes.append([cols.min(), rows.min(), cols.max() + 1 - cols.min(),
                          rows.max() + 1 - rows.min()])
    return boxes


def test_label_maps_are_the_person_part6_merge_of_the_fixtures(example_set,
                                                               pascal_part_dir):
    out, counts = example_set
    train = (out / "train.txt").read_text().split()
    val = (out / "val.txt").read_text().split()
    assert len(train) == 6 and len(val) == counts["labeled"] - 6 >= 1
    assert train + val == sorted(train + val)
    table = schema.get_scheme("person_part6").lookup_table()
    # head, torso, upper_arms, lower_arms, upper_legs, lower_legs: values 1-6
    assert schema.get_scheme("person_part6").class_names[1:] == (
        "head", "torso", "upper_arms", "lower_arms", "upper_legs", "lower_legs")
    seen = set()
    for image_id in train + val:
        anno = ph.load_pascal_part(pascal_part_dir / f"{image_id}.mat")
        expected = table[ph.paint_fine(anno["parts"], anno["height"], anno["width"])]
        png = Image.open(out / "labels" / f"{image_id}.png")
        assert png.mode == "P"
        np.testing.assert_array_equal(np.array(png), expected, err_msg=image_id)
        seen |= set(np.unique(expected).tolist())
        assert (out / "images" / f"{image_id}.jpg").read_bytes() == (
            pascal_part_dir / f"{image_id}.jpg").read_bytes()
    assert seen == set(range(7))


def test_detections_have_each_person_and_one_junk_box_per_photo(example_set,
                                                                pascal_part_dir):
    out, counts = example_set
    detections = json.loads((out / "detections.json").read_text())
    photos = sorted(p.stem for p in (out / "photos").iterdir())
    assert photos == sorted(p.stem for p in pascal_part_dir.glob("*.mat"))
    for image_id in photos:
        mine = [d for d in detections if d["image_id"] == image_id]
        people = [d["bbox"] for d in mine if d["score"] == 0.9]
        junk = [d for d in mine if d["score"] == 0.12]
        assert people == [[int(v) for v in b] for b in
                          _own_boxes(pascal_part_dir / f"{image_id}.mat")], image_id
        assert len(junk) == 1 and all(d["category_id"] == 1 for d in mine)
    assert counts["person_boxes"] == sum(d["score"] == 0.9 for d in detections)


def test_the_readme_pool_conversion_keeps_the_photos_with_persons(example_set, tmp_path):
    out, counts = example_set
    convert(source="boxes_only", images_dir=str(out / "photos"),
            coco_file=str(out / "detections.json"), min_score=0.5, split_name="pool",
            output_dir=str(tmp_path / "tfrecords"), progress=False)
    manifest = json.loads((tmp_path / "tfrecords" / "pool.manifest.json").read_text())
    assert manifest["counts"]["written"] == counts["labeled"]
    assert manifest["counts"]["skipped_no_person"] == counts["photos"] - counts["labeled"]
    assert manifest["counts"]["boxes_below_min_score"] == counts["junk_boxes"]
    assert manifest["counts"]["person_boxes_read"] == counts["person_boxes"]
    new = sorted(os.listdir(out / "new"))
    assert [os.path.splitext(n)[1] for n in new].count(".png") == 1 and len(new) == 3


def test_an_existing_output_dir_is_refused_untouched(pascal_part_dir, tmp_path):
    out = tmp_path / "own"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(ExampleSetError, match="--output_dir=.*own exists"):
        make_example_set(str(pascal_part_dir), str(out))
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_the_set_has_the_modes_of_the_umask(example_set):
    out, _ = example_set
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask


def test_fixtures_without_pairs_or_persons_are_named(pascal_part_dir, tmp_path):
    with pytest.raises(ExampleSetError, match="--fixtures_dir=.*nowhere is not a directory"):
        make_example_set(str(tmp_path / "nowhere"), str(tmp_path / "own"))
    with pytest.raises(ExampleSetError, match="no ID.mat \\+ ID.jpg pair"):
        make_example_set(str(tmp_path), str(tmp_path / "own"))
    with pytest.raises(ExampleSetError, match="--num_train=100 needs at least 101"):
        make_example_set(str(pascal_part_dir), str(tmp_path / "own"), num_train=100)
    # Nothing half-written is left beside the output.
    assert [p.name for p in tmp_path.iterdir()] == []
