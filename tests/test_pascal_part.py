"""Tests for tools/pascal_part.py: reading real Pascal-Part files into masks and boxes.

Expected values are computed here from the raw `.mat` contents with plain NumPy, by a
different route than the reader's, or come from the fixtures' README.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pipelines import schema
from tools import pascal_part

# From ../shared/fixtures/README.md.
PERSON_IDS = ("2008_000652", "2008_000700", "2008_000726", "2008_000939", "2008_003228",
              "2009_001103", "2010_002526", "2010_005243")
README_PERSON_COUNTS = {"2008_000726": 2, "2008_003228": 3, "2010_005243": 6}


def raw_objects(path):
    """[(class, mask, [(part_name, mask), ...])] straight from scipy."""
    objects = scipy.io.loadmat(path)["anno"][0, 0]["objects"][0]
    result = []
    for obj in objects:
        parts = [(str(p["part_name"][0]), p["mask"]) for p in obj["parts"].ravel()]
        result.append((str(obj["class"][0]), obj["mask"], parts))
    return result


def raw_persons(path):
    return [o for o in raw_objects(path) if o[0] == "person"]


def read(pascal_part_dir, image_id, **kw):
    return pascal_part.read_example(image_id, pascal_part_dir=str(pascal_part_dir),
                                    images_dir=str(pascal_part_dir), **kw)


def test_persons_found_and_others_skipped(pascal_part_dir):
    ids = sorted(p.stem for p in pascal_part_dir.glob("*.mat"))
    assert set(PERSON_IDS) <= set(ids)
    for image_id in ids:
        out = read(pascal_part_dir, image_id)
        n_raw = len(raw_persons(pascal_part_dir / f"{image_id}.mat"))
        if image_id in PERSON_IDS:
            assert isinstance(out, pascal_part.Converted), image_id
            assert out.num_persons == n_raw == len(out.boxes)
            assert out.num_persons == README_PERSON_COUNTS.get(image_id, out.num_persons)
            assert out.person_mask.max() == out.num_persons
        else:  # includes the boat without parts and the 'table' class
            assert n_raw == 0
            assert out == pascal_part.Skipped(image_id, pascal_part.NO_PERSON, "no person")


def test_image_fields_are_the_jpeg(pascal_part_dir):
    out = read(pascal_part_dir, "2010_002526")  # a portrait image: H > W
    data = (pascal_part_dir / "2010_002526.jpg").read_bytes()
    assert out.jpeg == data
    with Image.open(pascal_part_dir / "2010_002526.jpg") as im:
        assert (out.width, out.height) == im.size
    assert out.height > out.width
    assert out.person_mask.shape == out.parts_fine.shape == (out.height, out.width)
    assert out.person_mask.dtype == out.parts_fine.dtype == np.uint8


@pytest.mark.parametrize("image_id", ["2008_003228", "2010_005243", "2010_002526"])
def test_tight_boxes_of_person_masks(pascal_part_dir, image_id):
    out = read(pascal_part_dir, image_id)
    persons = raw_persons(pascal_part_dir / f"{image_id}.mat")
    assert out.boxes.shape == (len(persons), 4) and out.boxes.dtype == np.float32
    for box, (_, mask, _) in zip(out.boxes, persons):
        ys, xs = np.nonzero(mask)
        h, w = mask.shape
        expected = [ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w]
        np.testing.assert_allclose(box, expected, rtol=0, atol=1e-6)
        # The box's pixel rectangle holds the whole mask and touches it on all four sides.
        r0, c0 = round(box[0] * h), round(box[1] * w)
        r1, c1 = round(box[2] * h), round(box[3] * w)
        assert mask[r0:r1, c0:c1].sum() == mask.sum()
        assert mask[r0, c0:c1].any() and mask[r1 - 1, c0:c1].any()
        assert mask[r0:r1, c0].any() and mask[r0:r1, c1 - 1].any()


@pytest.mark.parametrize("image_id", ["2008_000726", "2010_002526", "2008_003228"])
def test_later_part_wins_where_parts_overlap(pascal_part_dir, image_id):
    out = read(pascal_part_dir, image_id)
    parts = [(schema.PART_ID[name], mask != 0)
             for _, _, obj_parts in raw_persons(pascal_part_dir / f"{image_id}.mat")
             for name, mask in obj_parts]
    ids = np.array([pid for pid, _ in parts])
    stack = np.stack([m for _, m in parts])                      # (K, H, W)
    covered = stack.any(axis=0)
    last = len(parts) - 1 - np.argmax(stack[::-1], axis=0)       # last part covering a pixel
    expected = np.where(covered, ids[last], 0)
    np.testing.assert_array_equal(out.parts_fine, expected)
    # The fixture really has pixels where an earlier part of another id lies underneath.
    first = np.argmax(stack, axis=0)
    contested = covered & (ids[first] != ids[last])
    assert contested.sum() > 100
    y, x = np.argwhere(contested)[0]
    assert out.parts_fine[y, x] == ids[last[y, x]] != ids[first[y, x]]


def test_later_person_wins_where_persons_overlap(pascal_part_dir):
    out = read(pascal_part_dir, "2008_000726")
    (_, m1, _), (_, m2, _) = raw_persons(pascal_part_dir / "2008_000726.mat")
    both = (m1 != 0) & (m2 != 0)
    assert both.sum() > 100
    assert (out.person_mask[both] == 2).all()
    assert (out.person_mask[(m1 != 0) & ~both] == 1).all()
    assert (out.person_mask[(m1 == 0) & (m2 == 0)] == 0).all()


def test_parts_of_other_objects_are_ignored(pascal_part_dir):
    # 2008_003228 holds a cat whose parts are named 'head', 'lear', 'torso', ...
    objects = raw_objects(pascal_part_dir / "2008_003228.mat")
    cat = [o for o in objects if o[0] == "cat"][0]
    assert {name for name, _ in cat[2]} & set(schema.PART_NAMES)
    person_parts = np.zeros(cat[1].shape, bool)
    for cls, _, parts in objects:
        if cls == "person":
            for _, mask in parts:
                person_parts |= mask != 0
    out = read(pascal_part_dir, "2008_003228")
    cat_only = (cat[1] != 0) & ~person_parts
    assert cat_only.sum() > 100
    assert (out.parts_fine[cat_only] == 0).all()
    assert out.person_mask[cat_only].max() == 0


VOC_XML = """<annotation>
  <filename>x.jpg</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  <object><name>dog</name>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
  <object>
    <name>person</name>
    <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>60</xmax><ymax>100</ymax></bndbox>
    <part><name>head</name>
      <bndbox><xmin>30</xmin><ymin>25</ymin><xmax>40</xmax><ymax>35</ymax></bndbox></part>
  </object>
  <object><name> person </name>
    <bndbox><xmin>1</xmin><ymin>0.5</ymin><xmax>{over}</xmax><ymax>{h}</ymax></bndbox></object>
</annotation>
"""


def test_voc_person_boxes(tmp_path):
    h, w = 120, 80
    path = tmp_path / "x.xml"
    path.write_text(VOC_XML.format(h=h, w=w, over=w + 7))
    boxes = pascal_part.voc_person_boxes(str(path), h, w)
    assert boxes.dtype == np.float32 and boxes.shape == (2, 4)
    # 1-based inclusive: columns 11..60 are pixels 10..59, i.e. [10, 60).
    np.testing.assert_allclose(boxes[0], [20 / h, 10 / w, 100 / h, 60 / w], atol=1e-7)
    # Clipped to [0, 1] (ymin - 1 < 0, xmax > width).
    np.testing.assert_allclose(boxes[1], [0, 0, 1, 1], atol=1e-7)


@pytest.mark.parametrize("text, problem", [
    ("<annotation><object><name>person</name></object>", "malformed VOC XML"),
    ("<annotation><object><name>person</name></object></annotation>", "no <bndbox>"),
    ("<annotation><object><name>person</name><bndbox><xmin>a</xmin></bndbox></object>"
     "</annotation>", "numeric"),
    ("<annotation><object><name>person</name><bndbox><xmin>9</xmin><ymin>1</ymin>"
     "<xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>", "empty box"),
])
def test_voc_xml_errors_name_file(tmp_path, text, problem):
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(pascal_part.BadInputError, match=problem) as e:
        pascal_part.voc_person_boxes(str(path), 10, 10)
    assert str(path) in str(e.value)
    with pytest.raises(pascal_part.BadInputError, match="missing VOC"):
        pascal_part.voc_person_boxes(str(tmp_path / "none.xml"), 10, 10)


def test_object_without_mask_is_bad_input(tmp_path, pascal_part_dir):
    objects = np.zeros((1, 1), dtype=[("class", "O"), ("class_ind", "O"), ("parts", "O")])
    objects[0, 0] = (np.array(["person"]), np.array([[15]], np.uint8), np.zeros((0, 0)))
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (np.array(["x"]), objects)
    path = tmp_path / "x.mat"
    scipy.io.savemat(path, {"anno": anno})
    with pytest.raises(pascal_part.BadInputError, match="no 'mask' field") as e:
        pascal_part.read_objects(str(path))
    assert str(path) in str(e.value)


def test_worker_side_never_imports_tensorflow(pascal_part_dir):
    # A spawn worker imports tools.pascal_part (and, run as a script, the tool module as
    # __mp_main__): none of that may pull in TensorFlow.
    code = (
        "import sys\n"
        "import tools.make_tfrecords\n"
        "from tools import pascal_part\n"
        f"out = pascal_part.convert_one('2008_000726', pascal_part_dir={str(pascal_part_dir)!r},"
        f" images_dir={str(pascal_part_dir)!r})\n"
        "assert out.num_persons == 2, out\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]
