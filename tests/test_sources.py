"""Tests of the converter's sources (tools/sources.py, label_png.py, boxes_only.py).

Every input is a small file the test writes (JPEGs, PNG label maps, VOC XML, COCO
JSON), except the label-map equivalence, which paints the shared Pascal-Part fixtures
as PNG label maps. Expected values come from what the test wrote, never from the
converter.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import pipeline_helpers as ph
from pipelines import decode, merge, records, schema
from tools import make_tfrecords
from tools.make_tfrecords import ArgumentError, BadInputError, convert

LIP_NAMES = ["Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress",
             "Coat", "Socks", "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm",
             "Right-arm", "Left-leg", "Right-leg", "Left-shoe", "Right-shoe"]
LIP = {name: value for value, name in enumerate(LIP_NAMES)}


def _read(out_dir, split="train"):
    """{id: parsed example} and the manifest of a converted split."""
    manifest = json.loads((out_dir / f"{split}.manifest.json").read_text())
    parsed = {}
    for shard in manifest["shards"]:
        for r in tf.data.TFRecordDataset(str(out_dir / shard["file"])):
            example = records.parse_example(r.numpy())
            parsed[example["id"]] = example
    return parsed, manifest


def _jpeg(path, height, width, seed=0):
    rng = np.random.RandomState(seed)
    path.write_bytes(ph.jpeg_bytes(rng.randint(0, 256, (height, width, 3))))


def _palette_png(path, values):
    im = Image.fromarray(np.asarray(values, np.uint8), mode="P")
    im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    im.save(path)


# === label_png ===

@pytest.fixture
def lip_dir(tmp_path):
    """Two LIP-style images: two separate persons; two persons who touch."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    apart = np.zeros((12, 16), np.uint8)
    apart[1:5, 1:4] = LIP["Face"]
    apart[5:10, 1:4] = LIP["Upper-clothes"]
    apart[2:6, 10:14] = LIP["Hair"]
    apart[6:11, 10:14] = LIP["Left-arm"]
    touching = np.zeros((12, 16), np.uint8)
    touching[2:8, 2:7] = LIP["Pants"]
    touching[2:8, 7:12] = LIP["Right-shoe"]  # shares an edge with the first person
    for name, values in (("apart", apart), ("touching", touching)):
        _jpeg(images / f"{name}.jpg", 12, 16)
        _palette_png(labels / f"{name}.png", values)
    (tmp_path / "lip.txt").write_text("\n".join(LIP_NAMES) + "\n")
    return tmp_path, {"apart": apart, "touching": touching}


def _convert_png(root, out, **kw):
    kw.setdefault("progress", False)
    return convert(source="label_png", labels_dir=str(root / "labels"),
                   images_dir=str(root / "images"), vocabulary=str(root / "lip.txt"),
                   output_dir=str(out), **kw)


def test_lip_style_png_with_a_vocabulary_file(lip_dir, tmp_path):
    root, maps = lip_dir
    manifest = _convert_png(root, tmp_path / "out")
    parsed, _ = _read(tmp_path / "out")
    vocabulary = schema.Vocabulary(LIP_NAMES[1:], name="lip")
    assert manifest["source"] == "label_png" and manifest["annotation"] == "parts"
    assert manifest["vocabulary"] == {"name": "lip", "part_names": LIP_NAMES[1:]}
    assert manifest["box_source"] == "connected_regions"
    for name, values in maps.items():
        example = parsed[name]
        assert example["vocabulary"] == vocabulary
        np.testing.assert_array_equal(example["parts_fine"], values)
        np.testing.assert_array_equal(example["person_mask"] > 0, values > 0)
    # Two regions: two persons, each its tight box (pixel edges).
    assert np.unique(parsed["apart"]["person_mask"]).tolist() == [0, 1, 2]
    np.testing.assert_allclose(parsed["apart"]["boxes"],
                               [[1 / 12, 1 / 16, 10 / 12, 4 / 16],
                                [2 / 12, 10 / 16, 11 / 12, 14 / 16]], rtol=1e-6)
    # Persons who touch are one region: one instance, one box around both.
    assert np.unique(parsed["touching"]["person_mask"]).tolist() == [0, 1]
    np.testing.assert_allclose(parsed["touching"]["boxes"],
                               [[2 / 12, 2 / 16, 8 / 12, 12 / 16]], rtol=1e-6)
    assert [e["persons"] for e in manifest["examples"]] == [2, 1]


def test_lip_records_merge_under_a_json_scheme_in_the_pipeline(lip_dir, tmp_path):
    root, maps = lip_dir
    _convert_png(root, tmp_path / "out")
    scheme = schema.scheme_from_json({"name": "lip_arms", "classes": [
        {"name": "head", "parts": ["Face", "Hair"]},
        {"name": "left_arm", "parts": ["Left-arm"]},
        {"name": "right_side", "parts": ["Right-arm", "Right-shoe"]}],
        "other_region": True}).bind(schema.Vocabulary(LIP_NAMES[1:]))
    serialized = [r.numpy() for r in
                  tf.data.TFRecordDataset(str(tmp_path / "out" / "train-00000-of-00001.tfrecord"))]
    example = decode.decode_example(serialized[0], require_parts=True)
    labels = merge.merge_parts(example["parts_fine"], example["person_mask"], scheme).numpy()
    expected = np.zeros((12, 16), np.int32)
    values = maps["apart"]
    expected[values > 0] = 4  # other human region: labeled, not selected
    expected[(values == LIP["Face"]) | (values == LIP["Hair"])] = 1
    expected[values == LIP["Left-arm"]] = 2
    np.testing.assert_array_equal(labels, expected)
    # The flip swaps LIP's left and right values.
    flipped = scheme.vocabulary.flip_permutation()
    assert flipped[LIP["Left-arm"]] == LIP["Right-arm"]


def test_bad_label_maps_are_named(lip_dir, tmp_path):
    root, maps = lip_dir
    outside = maps["apart"].copy()
    outside[0, 0] = 40  # LIP names values 0..19
    _palette_png(root / "labels" / "apart.png", outside)
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(root / "labels" / "touching.png")
    _jpeg(root / "images" / "small.jpg", 10, 16)
    _palette_png(root / "labels" / "small.png", maps["touching"])  # 12 x 16: not the image
    _jpeg(root / "images" / "empty.jpg", 12, 16)
    _palette_png(root / "labels" / "empty.png", np.zeros((12, 16)))
    _jpeg(root / "images" / "good.jpg", 12, 16)
    _palette_png(root / "labels" / "good.png", maps["apart"])
    manifest = _convert_png(root, tmp_path / "out")
    reasons = {s["id"]: s["reason"] for s in manifest["skipped"]}
    assert manifest["counts"]["written"] == 1 and sorted(reasons) == [
        "apart", "empty", "small", "touching"]
    assert "apart.png: label values [40] are not in the vocabulary lip" in reasons["apart"]
    assert "touching.png: a RGB PNG holds colours, not label values" in reasons["touching"]
    assert "small.png: the label map is 12x16 (HxW), but the image is 10x16" in reasons["small"]
    assert reasons["empty"].startswith("no person") and "empty.png is all 0" in reasons["empty"]


def test_fixtures_painted_as_png_give_the_pascal_part_maps_under_all4(pascal_part_dir,
                                                                      tmp_path):
    """The shared fixtures as PNG label maps (value = Pascal-Part part id, 25 = a person
    pixel no part covers) give the same all4 maps as the pascal_part path."""
    ids = ("2008_000726", "2010_005243", "2008_003228")
    labels_dir = tmp_path / "labels"
    labels_dir.mkdir()
    for image_id in ids:
        anno = ph.load_pascal_part(pascal_part_dir / f"{image_id}.mat")
        fine = ph.paint_fine(anno["parts"], anno["height"], anno["width"])
        painted = np.where((anno["person_mask"] > 0) & (fine == 0), 25, fine)
        Image.fromarray(painted.astype(np.uint8), mode="L").save(labels_dir / f"{image_id}.png")
    (tmp_path / "vocabulary.json").write_text(
        json.dumps(["background"] + list(schema.PART_NAMES) + ["person"]))
    split = tmp_path / "ids.txt"
    split.write_text("\n".join(ids) + "\n")
    convert(pascal_part_dir=str(pascal_part_dir), images_dir=str(pascal_part_dir),
            split_list=str(split), output_dir=str(tmp_path / "mat"), progress=False)
    convert(source="label_png", labels_dir=str(labels_dir), images_dir=str(pascal_part_dir),
            vocabulary=str(tmp_path / "vocabulary.json"), output_dir=str(tmp_path / "png"),
            progress=False)
    from_mat, _ = _read(tmp_path / "mat")
    from_png, manifest = _read(tmp_path / "png")
    assert sorted(from_png) == sorted(ids) == sorted(from_mat)
    all4 = schema.get_scheme("all4")
    png_all4 = all4.bind(from_png[ids[0]]["vocabulary"])
    compared = set()
    for image_id in ids:
        a, b = from_mat[image_id], from_png[image_id]
        assert a["jpeg"] == b["jpeg"]
        maps = [merge.merge_parts(e["parts_fine"], e["person_mask"], s).numpy()
                for e, s in ((a, all4), (b, png_all4))]
        np.testing.assert_array_equal(maps[0], maps[1], err_msg=image_id)
        compared |= set(np.unique(maps[0]).tolist())
    assert compared == set(range(all4.num_classes))  # every class, "other" included


# === boxes_only ===

@pytest.fixture
def photos(tmp_path):
    """Three photos: a.jpg, b.jpg, c.jpeg (40 x 60)."""
    directory = tmp_path / "photos"
    directory.mkdir()
    for i, name in enumerate(("a.jpg", "b.jpg", "c.jpeg")):
        _jpeg(directory / name, 40, 60, seed=i)
    return directory


def _convert_boxes(photos, out, **kw):
    kw.setdefault("progress", False)
    return convert(source="boxes_only", images_dir=str(photos), output_dir=str(out), **kw)


def test_coco_instances_with_two_persons_and_a_crowd(photos, tmp_path):
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 60},
                   {"id": 2, "file_name": "b.jpg", "height": 40, "width": 60},
                   {"id": 3, "file_name": "c.jpeg", "height": 40, "width": 60}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [6, 4, 12, 20], "iscrowd": 0},
            {"image_id": 1, "category_id": 1, "bbox": [30, 0, 30, 40], "iscrowd": 0},
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 60, 40], "iscrowd": 1},
            {"image_id": 3, "category_id": 1, "bbox": [0, 0, 60, 40], "iscrowd": 1}]}))
    manifest = _convert_boxes(photos, tmp_path / "out", coco_file=str(coco))
    parsed, _ = _read(tmp_path / "out")
    assert sorted(parsed) == ["a"]
    np.testing.assert_allclose(parsed["a"]["boxes"],
                               [[0.1, 0.1, 0.6, 0.3], [0.0, 0.5, 1.0, 1.0]], rtol=1e-6)
    assert parsed["a"]["annotation"] == "boxes" and parsed["a"]["parts_fine"] is None
    assert parsed["a"]["jpeg"] == (photos / "a.jpg").read_bytes()
    counts = manifest["counts"]
    assert counts["crowd_annotations_skipped"] == 2 and counts["written"] == 1
    # b has no annotation at all, c only a crowd: both skipped as without a person box.
    assert counts["skipped_no_person"] == 2 and counts["skipped_bad_input"] == 0
    assert {s["id"] for s in manifest["skipped"]} == {"b", "c"}
    assert manifest["annotation"] == "boxes" and manifest["vocabulary"] is None
    assert manifest["box_source"] == "coco_instances"
    assert manifest["feature_keys"] == list(schema.BOXES_FEATURE_KEYS)


def test_detections_with_scores_on_both_sides_of_min_score(photos, tmp_path):
    detections = tmp_path / "detections.json"
    detections.write_text(json.dumps([
        {"image_id": "a", "category_id": 1, "bbox": [0, 0, 30, 20], "score": 0.95},
        {"image_id": "a", "category_id": 1, "bbox": [30, 20, 30, 20], "score": 0.6},
        {"image_id": "a", "category_id": 1, "bbox": [10, 10, 5, 5], "score": 0.59},
        {"image_id": "b", "category_id": 1, "bbox": [0, 0, 60, 40], "score": 0.3}]))
    manifest = _convert_boxes(photos, tmp_path / "out", coco_file=str(detections),
                              min_score=0.6)
    parsed, _ = _read(tmp_path / "out")
    assert sorted(parsed) == ["a"]
    np.testing.assert_allclose(parsed["a"]["boxes"],
                               [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], rtol=1e-6)
    assert manifest["counts"]["boxes_below_min_score"] == 2
    # b: its only detection is under the cut; c: no detection at all.
    skipped = {s["id"]: s for s in manifest["skipped"]}
    assert sorted(skipped) == ["b", "c"]
    assert all(s["kind"] == "no person" for s in skipped.values())
    assert manifest["box_source"] == "coco_detections"
    assert manifest["arguments"]["min_score"] == 0.6


def test_an_image_without_boxes_is_skipped_and_counted(photos, tmp_path):
    xml = tmp_path / "xml"
    xml.mkdir()
    person = ("<object><name>person</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
              "<xmax>30</xmax><ymax>40</ymax></bndbox></object>")
    dog = person.replace("person", "dog")
    for name, objects in (("a", person), ("b", dog), ("c", "")):
        (xml / f"{name}.xml").write_text(f"<annotation>{objects}</annotation>")
    manifest = _convert_boxes(photos, tmp_path / "out", voc_annotations_dir=str(xml))
    parsed, _ = _read(tmp_path / "out")
    assert sorted(parsed) == ["a"]
    np.testing.assert_allclose(parsed["a"]["boxes"], [[0.0, 0.0, 1.0, 0.5]])
    assert manifest["counts"]["skipped_no_person"] == 2
    assert [s["reason"] for s in manifest["skipped"]] == [
        f"no person box in {xml}/b.xml", f"no person box in {xml}/c.xml"]


def test_a_png_photo_is_named_not_reencoded(photos, tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photos / "d.png")
    xml = tmp_path / "xml"
    xml.mkdir()
    for name in "abcd":
        (xml / f"{name}.xml").write_text(
            "<annotation><object><name>person</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
            "<xmax>8</xmax><ymax>8</ymax></bndbox></object></annotation>")
    manifest = _convert_boxes(photos, tmp_path / "out", voc_annotations_dir=str(xml))
    bad = [s for s in manifest["skipped"] if s["kind"] == "bad input"]
    assert [s["id"] for s in bad] == ["d"]
    assert str(photos / "d.png") in bad[0]["reason"] and "not a JPEG" in bad[0]["reason"]
    with pytest.raises(BadInputError, match="d.png: not a JPEG"):
        _convert_boxes(photos, tmp_path / "out2", voc_annotations_dir=str(xml),
                       on_error="fail")


@pytest.mark.parametrize("kw, message", [
    ({"source": "boxes_only"}, "--voc_annotations_dir or --coco_file"),
    ({"source": "boxes_only", "labels_dir": "."}, "--labels_dir: --source=boxes_only "
                                                  "does not read it"),
    ({"source": "pascal_part", "min_score": 0.3}, "--min_score: --source=pascal_part"),
    ({"source": "label_png", "labels_dir": "."}, "--vocabulary: required"),
    ({"source": "photos"}, "--source: must be one of"),
])
def test_source_flags_are_checked_before_any_work(photos, tmp_path, kw, message):
    kw = dict(kw)
    source = kw.pop("source")
    with pytest.raises(ArgumentError, match=message):
        convert(source=source, images_dir=str(photos), output_dir=str(tmp_path / "out"),
                progress=False, **kw)
    assert not (tmp_path / "out").exists()


def test_workers_give_the_same_shards(photos, tmp_path):
    detections = tmp_path / "d.json"
    detections.write_text(json.dumps([
        {"image_id": name, "category_id": 1, "bbox": [1, 2, 20, 30], "score": 0.9}
        for name in "abc"]))
    for workers in (1, 2):
        _convert_boxes(photos, tmp_path / f"w{workers}", coco_file=str(detections),
                       num_workers=workers)
    one = (tmp_path / "w1" / "train-00000-of-00001.tfrecord").read_bytes()
    assert one == (tmp_path / "w2" / "train-00000-of-00001.tfrecord").read_bytes()
    assert make_tfrecords.shard_name("train", 0, 1) == "train-00000-of-00001.tfrecord"
