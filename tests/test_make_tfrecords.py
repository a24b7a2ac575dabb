"""Tests for tools/make_tfrecords.py: real Pascal-Part files -> shards -> parsed back.

Expected values come from the raw `.mat` files (read here with scipy), the fixtures'
README and the held-out all4 label maps, never from the converter itself.
"""

import io
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
from PIL import Image

from pipelines import records
from pipelines import schema
from tools import make_tfrecords
from tools.make_tfrecords import ArgumentError, BadInputError, convert

REPO = pathlib.Path(__file__).resolve().parents[1]
HOLDOUT = REPO.parent / "shared" / "holdout"

# From ../shared/fixtures/README.md.
PERSON_IDS = ("2008_000652", "2008_000700", "2008_000726", "2008_000939", "2008_003228",
              "2009_001103", "2010_002526", "2010_005243")
README_PERSON_COUNTS = {"2008_000726": 2, "2008_003228": 3, "2010_005243": 6}


def read_shard(path):
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def read_split(out_dir, split="train"):
    """{id: parsed example}, the serialized records in file order, and the manifest."""
    manifest = json.loads((out_dir / f"{split}.manifest.json").read_text())
    serialized = []
    for shard in manifest["shards"]:
        serialized += read_shard(out_dir / shard["file"])
    parsed = [records.parse_example(s) for s in serialized]
    return {p["id"]: p for p in parsed}, serialized, manifest


def raw_persons(mat_path):
    objects = scipy.io.loadmat(mat_path)["anno"][0, 0]["objects"][0]
    return [o for o in objects if str(o["class"][0]) == "person"]


def run(pascal_part_dir, out_dir, **kw):
    kw.setdefault("progress", False)
    return convert(pascal_part_dir=str(pascal_part_dir), images_dir=str(pascal_part_dir),
                   output_dir=str(out_dir), **kw)


def file_names(directory):
    return sorted(p.name for p in pathlib.Path(directory).iterdir())


# === The fixtures, end to end ===

def test_written_and_skipped_ids(pascal_part_dir, tmp_path):
    manifest = run(pascal_part_dir, tmp_path / "out")
    all_ids = sorted(p.stem for p in pascal_part_dir.glob("*.mat"))
    written = [e["id"] for e in manifest["examples"]]
    assert sorted(written) == sorted(PERSON_IDS)
    assert [s["id"] for s in manifest["skipped"]] == [i for i in all_ids if i not in PERSON_IDS]
    assert all(s["kind"] == s["reason"] == "no person" for s in manifest["skipped"])
    for entry in manifest["examples"]:
        n = len(raw_persons(pascal_part_dir / f"{entry['id']}.mat"))
        assert entry["persons"] == entry["boxes"] == n
        assert n == README_PERSON_COUNTS.get(entry["id"], n)
    assert manifest["counts"] == {
        "ids": len(all_ids), "written": len(PERSON_IDS),
        "persons": sum(e["persons"] for e in manifest["examples"]),
        "skipped": len(all_ids) - len(PERSON_IDS),
        "skipped_no_person": len(all_ids) - len(PERSON_IDS), "skipped_bad_input": 0,
        "turned_upright": 0}  # no fixture carries an EXIF orientation
    # The file on disk is what convert returned.
    assert json.loads((tmp_path / "out" / "train.manifest.json").read_text()) == manifest


def test_round_trip_through_parse_example(pascal_part_dir, tmp_path):
    run(pascal_part_dir, tmp_path)
    examples, _, _ = read_split(tmp_path)
    assert sorted(examples) == sorted(PERSON_IDS)
    for image_id, ex in examples.items():
        data = (pascal_part_dir / f"{image_id}.jpg").read_bytes()
        assert ex["jpeg"] == data
        with Image.open(io.BytesIO(data)) as im:
            assert (ex["width"], ex["height"]) == im.size
        persons = raw_persons(pascal_part_dir / f"{image_id}.mat")
        h, w = ex["height"], ex["width"]
        assert ex["boxes"].shape == (len(persons), 4)
        expected_mask = np.zeros((h, w), np.uint8)
        for k, (obj, box) in enumerate(zip(persons, ex["boxes"]), start=1):
            ys, xs = np.nonzero(obj["mask"])
            np.testing.assert_allclose(
                box, [ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w],
                atol=1e-6)
            expected_mask[obj["mask"] != 0] = k
        np.testing.assert_array_equal(ex["person_mask"], expected_mask)
        assert ex["parts_fine"].max() <= len(schema.PART_NAMES)
        # Every part pixel is a person pixel in these files.
        assert not (ex["parts_fine"].astype(bool) & (ex["person_mask"] == 0)).any()


def test_later_part_wins_in_the_written_map(pascal_part_dir, tmp_path):
    # 2008_000726: the parts of its two persons overlap a lot (e.g. person 1's torso
    # and person 2's arm). Where part j lies over an earlier part of another id and no
    # part after j covers the pixel, the written map holds part j.
    run(pascal_part_dir, tmp_path, split_list=_split_list(tmp_path, ["2008_000726"]))
    ex = read_split(tmp_path)[0]["2008_000726"]
    parts = [(schema.PART_ID[str(p["part_name"][0])], p["mask"] != 0)
             for obj in raw_persons(pascal_part_dir / "2008_000726.mat")
             for p in obj["parts"].ravel()]

    def union(masks):
        return np.any(masks, axis=0) if masks else np.zeros_like(parts[0][1])

    checked = 0
    for j, (id_j, m_j) in enumerate(parts):
        under = union([m for id_i, m in parts[:j] if id_i != id_j])
        contested = m_j & under & ~union([m for _, m in parts[j + 1:]])
        if contested.any():
            y, x = np.argwhere(contested)[0]
            assert ex["parts_fine"][y, x] == id_j
            assert (ex["parts_fine"][contested] == id_j).all()
            checked += 1
    assert checked >= 3


def test_holdout_all4_maps(tmp_path):
    expected_path = HOLDOUT / "expected_all4.npz"
    if not expected_path.is_file():
        pytest.skip(f"held-out all4 maps not found at {expected_path}")
    expected = np.load(expected_path)
    manifest = run(HOLDOUT / "pascal_part", tmp_path)
    examples, _, _ = read_split(tmp_path)
    assert sorted(examples) == sorted(expected.files)
    assert manifest["counts"]["skipped"] == 0
    table = schema.get_scheme("all4").lookup_table()
    for image_id in expected.files:
        np.testing.assert_array_equal(table[examples[image_id]["parts_fine"]],
                                      expected[image_id], err_msg=image_id)


def test_manifest_and_shard_names(pascal_part_dir, tmp_path):
    out = tmp_path / "out"
    manifest = run(pascal_part_dir, out, split_name="val", num_shards=3)
    names = [f"val-{i:05d}-of-00003.tfrecord" for i in range(3)]
    assert file_names(out) == sorted(names + ["val.manifest.json"])
    assert manifest["schema_version"] == schema.SCHEMA_VERSION
    assert manifest["split"] == "val" and manifest["num_shards"] == 3
    assert manifest["part_names"] == list(schema.PART_NAMES)
    assert manifest["feature_keys"] == list(schema.FEATURE_KEYS)
    assert manifest["box_source"] == "person_mask"
    assert manifest["sources"] == {"pascal_part_dir": str(pascal_part_dir),
                                   "images_dir": str(pascal_part_dir),
                                   "voc_annotations_dir": None, "split_list": None}
    assert manifest["arguments"]["num_shards"] == 3
    assert manifest["arguments"]["split_name"] == "val"
    assert manifest["created_by"]["tool_version"] == make_tfrecords.TOOL_VERSION
    # Written ids are listed in shard order; each shard holds what the manifest says,
    # round-robin in id order (sizes differ by at most one).
    assert [s["file"] for s in manifest["shards"]] == names
    listed = []
    for i, name in enumerate(names):
        ids = [records.parse_example(r)["id"] for r in read_shard(out / name)]
        assert ids == [e["id"] for e in manifest["examples"] if e["shard"] == i]
        assert manifest["shards"][i]["examples"] == len(ids)
        listed += ids
    assert listed == [e["id"] for e in manifest["examples"]]
    sizes = [s["examples"] for s in manifest["shards"]]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(PERSON_IDS)
    assert sorted(listed)[::3] == [e["id"] for e in manifest["examples"] if e["shard"] == 0]


def test_deterministic_and_independent_of_shards_and_workers(pascal_part_dir, tmp_path):
    def shard_bytes(directory):
        return {p.name: p.read_bytes() for p in sorted(directory.glob("*.tfrecord"))}

    run(pascal_part_dir, tmp_path / "a")
    run(pascal_part_dir, tmp_path / "b")
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    manifests = [json.loads((tmp_path / d / "train.manifest.json").read_text()) for d in "ab"]
    assert [m["arguments"].pop("output_dir") for m in manifests] == [
        str(tmp_path / "a"), str(tmp_path / "b")]
    assert manifests[0] == manifests[1]  # no time stamps, no pids

    run(pascal_part_dir, tmp_path / "c", num_shards=3, num_workers=2)
    run(pascal_part_dir, tmp_path / "d", num_shards=3, num_workers=1)
    assert shard_bytes(tmp_path / "c") == shard_bytes(tmp_path / "d")
    _, one_shard, _ = read_split(tmp_path / "a")
    _, three_shards, _ = read_split(tmp_path / "c")
    assert len(one_shard) == len(PERSON_IDS)
    assert sorted(one_shard) == sorted(three_shards)


def test_voc_xml_boxes(pascal_part_dir, tmp_path):
    ann = tmp_path / "Annotations"
    ann.mkdir()
    # 2008_000726 is 320 wide, 240 high; the second person box runs past the border.
    (ann / "2008_000726.xml").write_text("""<annotation>
      <object><name>person</name><bndbox><xmin>101</xmin><ymin>31</ymin>
        <xmax>200</xmax><ymax>240</ymax></bndbox></object>
      <object><name>chair</name><bndbox><xmin>1</xmin><ymin>1</ymin>
        <xmax>9</xmax><ymax>9</ymax></bndbox></object>
      <object><name>person</name><bndbox><xmin>1</xmin><ymin>0</ymin>
        <xmax>330</xmax><ymax>120</ymax></bndbox></object>
    </annotation>""")
    split = _split_list(tmp_path, ["2008_000726", "2008_000652"])
    manifest = run(pascal_part_dir, tmp_path / "out", voc_annotations_dir=str(ann),
                   split_list=split)
    assert manifest["box_source"] == "voc_xml"
    assert [e["id"] for e in manifest["examples"]] == ["2008_000726"]
    (bad,) = manifest["skipped"]
    assert bad["id"] == "2008_000652" and bad["kind"] == "bad input"
    assert str(ann / "2008_000652.xml") in bad["reason"] and "missing" in bad["reason"]
    ex = read_split(tmp_path / "out")[0]["2008_000726"]
    assert (ex["height"], ex["width"]) == (240, 320)
    np.testing.assert_allclose(ex["boxes"], [[30 / 240, 100 / 320, 1.0, 200 / 320],
                                             [0.0, 0.0, 120 / 240, 1.0]], atol=1e-7)


def test_split_list_order_blank_lines_and_no_final_newline(pascal_part_dir, tmp_path):
    split = tmp_path / "ids.txt"
    split.write_text("2010_002526\n\n  2008_000652  \n2010_000145\n2008_000700")
    manifest = run(pascal_part_dir, tmp_path / "out", split_list=str(split), num_shards=1)
    assert [e["id"] for e in manifest["examples"]] == ["2010_002526", "2008_000652",
                                                        "2008_000700"]
    assert manifest["skipped"] == [{"id": "2010_000145", "kind": "no person",
                                    "reason": "no person"}]
    assert manifest["sources"]["split_list"] == str(split)


def test_progress_bar_and_summary(pascal_part_dir, tmp_path, capsys):
    run(pascal_part_dir, tmp_path, num_shards=2, progress=True)
    err = capsys.readouterr().err
    n_ids = len(list(pascal_part_dir.glob("*.mat")))
    n_skip = n_ids - len(PERSON_IDS)
    assert "images/s" in err and f"{n_ids}/{n_ids} images" in err
    assert (f"wrote {len(PERSON_IDS)} examples in 2 shards to {tmp_path}; skipped {n_skip} "
            f"(no person: {n_skip}, bad input: 0)") in err


# === Re-runs, interrupted runs and other splits ===

def test_rerun_replaces_shards_and_keeps_other_splits(pascal_part_dir, tmp_path):
    out = tmp_path
    run(pascal_part_dir, out, split_name="val", num_shards=2)
    val_files = {n: (out / n).read_bytes() for n in file_names(out)}
    run(pascal_part_dir, out, num_shards=3)
    # A killed run's leftovers: train's are removed, val's belong to someone else.
    (out / ".train-00000-of-00002.tfrecord.tmp-99999").write_bytes(b"partial")
    (out / ".train.manifest.json.tmp-99999").write_bytes(b"{")
    (out / ".val-00001-of-00002.tfrecord.tmp-4242").write_bytes(b"partial")
    (out / "train_extra-00000-of-00001.tfrecord").write_bytes(b"not ours")
    manifest = run(pascal_part_dir, out, num_shards=2)
    assert file_names(out) == sorted(
        list(val_files) + [".val-00001-of-00002.tfrecord.tmp-4242",
                           "train_extra-00000-of-00001.tfrecord",
                           "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
                           "train.manifest.json"])
    assert {n: (out / n).read_bytes() for n in val_files} == val_files
    assert manifest["num_shards"] == 2
    assert len(read_split(out)[1]) == len(PERSON_IDS)


def test_interrupted_run_leaves_no_output(pascal_part_dir, tmp_path, monkeypatch):
    (tmp_path / "val.manifest.json").write_text("{}")
    calls = []

    def make_example(**kw):
        calls.append(kw["image_id"])
        if len(calls) % 3 == 0:  # the third example of each run
            raise KeyboardInterrupt
        return records.make_example(**kw)

    monkeypatch.setattr(make_tfrecords.records, "make_example", make_example)
    with pytest.raises(KeyboardInterrupt):
        run(pascal_part_dir, tmp_path, num_shards=2)
    assert file_names(tmp_path) == ["val.manifest.json"]
    with pytest.raises(KeyboardInterrupt):
        run(pascal_part_dir, tmp_path / "new" / "dir")  # a directory the run creates
    assert not (tmp_path / "new" / "dir").exists()


# === Bad input ===

GOOD_IDS = ("2008_000652", "2008_000726")
BAD_ID = "2008_000939"  # one person, plus a car with parts


def _split_list(tmp_path, ids):
    path = tmp_path / "split.txt"
    path.write_text("\n".join(ids))  # the last line without a newline
    return str(path)


def _edit_mat(path, edit):
    mat = scipy.io.loadmat(path)
    edit(mat["anno"][0, 0]["objects"])
    scipy.io.savemat(path, {"anno": mat["anno"]})


def _shrink_person_mask(objects):
    objects[0, 0]["mask"] = objects[0, 0]["mask"][:-1, :]


def _unknown_part(objects):
    objects[0, 0]["parts"][0, 1]["part_name"] = np.array(["lelbow"])


def _drop_mask_field(path):
    old = scipy.io.loadmat(path)["anno"][0, 0]["objects"]
    objects = np.zeros(old.shape, dtype=[("class", "O"), ("class_ind", "O"), ("parts", "O")])
    for i in range(old.shape[1]):
        objects[0, i] = (old[0, i]["class"], old[0, i]["class_ind"], old[0, i]["parts"])
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (np.array([BAD_ID]), objects)
    scipy.io.savemat(path, {"anno": anno})


# name: (how to break BAD_ID's copy, the file the reason names, words of the problem)
BAD_CASES = {
    "zero_byte_jpeg": (lambda mat, jpg: jpg.write_bytes(b""), "jpg", "empty file"),
    "truncated_jpeg": (lambda mat, jpg: jpg.write_bytes(jpg.read_bytes()[:len(
        jpg.read_bytes()) // 2]), "jpg", "truncated"),
    "missing_jpeg": (lambda mat, jpg: jpg.unlink(), "jpg", "missing JPEG"),
    "png_named_jpg": (lambda mat, jpg: Image.new("RGB", (500, 375)).save(jpg, format="PNG"),
                      "jpg", "not a JPEG"),
    "truncated_mat": (lambda mat, jpg: mat.write_bytes(mat.read_bytes()[:5000]), "mat",
                      "truncated or malformed"),
    "mat_without_anno": (lambda mat, jpg: scipy.io.savemat(mat, {"annotation": np.eye(2)}),
                         "mat", "no 'anno'"),
    "object_without_mask": (lambda mat, jpg: _drop_mask_field(mat), "mat", "no 'mask' field"),
    "wrong_size_mask": (lambda mat, jpg: _edit_mat(mat, _shrink_person_mask), "mat",
                        "mask is 374x500 (HxW), but the image is 375x500"),
    "unknown_part_name": (lambda mat, jpg: _edit_mat(mat, _unknown_part), "mat",
                          "unknown part name 'lelbow'"),
    "id_without_files": (lambda mat, jpg: (mat.unlink(), jpg.unlink()), "mat", "no files"),
}


def _bad_inputs(pascal_part_dir, tmp_path, case):
    """Separate .mat and .jpg dirs holding GOOD_IDS and a broken copy of BAD_ID."""
    ann, img = tmp_path / "Annotations_Part", tmp_path / "JPEGImages"
    ann.mkdir()
    img.mkdir()
    for image_id in GOOD_IDS + (BAD_ID,):
        shutil.copy(pascal_part_dir / f"{image_id}.mat", ann)
        shutil.copy(pascal_part_dir / f"{image_id}.jpg", img)
    breaker, kind, problem = BAD_CASES[case]
    breaker(ann / f"{BAD_ID}.mat", img / f"{BAD_ID}.jpg")
    named = ann / f"{BAD_ID}.mat" if kind == "mat" else img / f"{BAD_ID}.jpg"
    kw = dict(pascal_part_dir=str(ann), images_dir=str(img), progress=False,
              split_list=_split_list(tmp_path, [GOOD_IDS[0], BAD_ID, GOOD_IDS[1]]))
    return kw, str(named), problem


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_skipped_and_listed(pascal_part_dir, tmp_path, case):
    kw, named, problem = _bad_inputs(pascal_part_dir, tmp_path, case)
    out = tmp_path / "out"
    manifest = convert(output_dir=str(out), on_error="skip", num_shards=2, **kw)
    assert [e["id"] for e in manifest["examples"]] == list(GOOD_IDS)
    assert manifest["counts"]["skipped_bad_input"] == manifest["counts"]["skipped"] == 1
    (skipped,) = manifest["skipped"]
    assert skipped["id"] == BAD_ID and skipped["kind"] == "bad input"
    assert named in skipped["reason"] and problem in skipped["reason"], skipped["reason"]
    assert sorted(read_split(out)[0]) == sorted(GOOD_IDS)


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_fails_without_output(pascal_part_dir, tmp_path, case):
    kw, named, problem = _bad_inputs(pascal_part_dir, tmp_path, case)
    out = tmp_path / "out"
    out.mkdir()
    (out / "val-00000-of-00001.tfrecord").write_bytes(b"another split")
    (out / "val.manifest.json").write_text("{}")
    with pytest.raises(BadInputError) as e:
        convert(output_dir=str(out), on_error="fail", num_shards=2, **kw)
    assert named in str(e.value) and problem in str(e.value)
    assert file_names(out) == ["val-00000-of-00001.tfrecord", "val.manifest.json"]
    assert (out / "val-00000-of-00001.tfrecord").read_bytes() == b"another split"


def test_bad_input_fails_with_workers(pascal_part_dir, tmp_path):
    kw, named, _ = _bad_inputs(pascal_part_dir, tmp_path, "truncated_jpeg")
    out = tmp_path / "new_out"
    with pytest.raises(BadInputError, match="truncated"):
        convert(output_dir=str(out), on_error="fail", num_workers=2, **kw)
    assert not out.exists() or file_names(out) == []


# === Arguments ===

@pytest.mark.parametrize("change, flag", [
    (dict(pascal_part_dir="/nonexistent/parts"), "--pascal_part_dir"),
    (dict(images_dir="/nonexistent/images"), "--images_dir"),
    (dict(voc_annotations_dir="/nonexistent/xml"), "--voc_annotations_dir"),
    (dict(split_list="/nonexistent/list.txt"), "--split_list"),
    (dict(output_dir=""), "--output_dir"),
    (dict(num_shards=0), "--num_shards"),
    (dict(num_workers=0), "--num_workers"),
    (dict(on_error="ignore"), "--on_error"),
    (dict(split_name="../train"), "--split_name"),
    (dict(split_name=".hidden"), "--split_name"),
])
def test_bad_arguments_refused_before_work(pascal_part_dir, tmp_path, change, flag):
    out = tmp_path / "out"
    kw = dict(pascal_part_dir=str(pascal_part_dir), images_dir=str(pascal_part_dir),
              output_dir=str(out), progress=False)
    kw.update(change)
    with pytest.raises(ArgumentError, match=flag):
        convert(**kw)
    assert not out.exists()


@pytest.mark.parametrize("text, problem", [
    ("2008_000652\n2008_000726\n2008_000652\n", "twice"),
    ("/JPEGImages/2008_000652.jpg /SegmentationPart/2008_000652.png\n", "one image id"),
    ("\n\n", "no ids"),
])
def test_bad_split_list(pascal_part_dir, tmp_path, text, problem):
    split = tmp_path / "ids.txt"
    split.write_text(text)
    with pytest.raises(ArgumentError, match=problem) as e:
        run(pascal_part_dir, tmp_path / "out", split_list=str(split))
    assert "--split_list" in str(e.value) and str(split) in str(e.value)


def test_output_dir_that_is_a_file(pascal_part_dir, tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(ArgumentError, match="--output_dir"):
        run(pascal_part_dir, tmp_path / "out")


# === Command line ===

def _cli(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_tfrecords.py"), *args],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_cli(pascal_part_dir, tmp_path):
    out = tmp_path / "out"
    res = _cli(f"--pascal_part_dir={pascal_part_dir}", f"--images_dir={pascal_part_dir}",
               f"--output_dir={out}", "--num_shards=2", "--num_workers=2")
    assert res.returncode == 0, res.stderr
    n_skip = len(list(pascal_part_dir.glob("*.mat"))) - len(PERSON_IDS)
    assert (f"wrote {len(PERSON_IDS)} examples in 2 shards to {out}; skipped {n_skip} "
            f"(no person: {n_skip}, bad input: 0)") in res.stderr
    assert "images/s" in res.stderr
    assert file_names(out) == ["train-00000-of-00002.tfrecord",
                               "train-00001-of-00002.tfrecord", "train.manifest.json"]
    assert json.loads((out / "train.manifest.json").read_text())["arguments"]["num_workers"] == 2

    res = _cli(f"--pascal_part_dir={pascal_part_dir}", f"--images_dir={pascal_part_dir}",
               f"--output_dir={out}", "--num_shards=0")
    assert res.returncode == 1 and "--num_shards" in res.stderr


def test_cli_fail_on_bad_input(pascal_part_dir, tmp_path):
    kw, named, problem = _bad_inputs(pascal_part_dir, tmp_path, "wrong_size_mask")
    out = tmp_path / "out"
    res = _cli(f"--pascal_part_dir={kw['pascal_part_dir']}", f"--images_dir={kw['images_dir']}",
               f"--split_list={kw['split_list']}", f"--output_dir={out}", "--on_error=fail")
    assert res.returncode == 1
    assert named in res.stderr and problem in res.stderr
    assert not out.exists() or file_names(out) == []


# === Shard count against example count (issue 15 case 2) ===

@pytest.mark.parametrize("num_ids, num_shards", [(3, 4), (1, 5), (2, 2), (4, 3), (8, 16)])
def test_every_shard_holds_a_record_and_the_readers_take_the_set(
        pascal_part_dir, tmp_path, num_ids, num_shards):
    """What the converter writes, the project's own readers accept: no shard is empty,
    whatever --num_shards against the number of examples."""
    from coseg_tf import train_lib
    from pipelines import dataset_files, streams

    ids = list(PERSON_IDS[:num_ids])
    out = tmp_path / "out"
    manifest = run(pascal_part_dir, out, split_list=str(_split_list(tmp_path, ids)),
                   num_shards=num_shards)
    used = min(num_ids, num_shards)
    assert file_names(out) == [make_tfrecords.shard_name("train", i, used)
                               for i in range(used)] + ["train.manifest.json"]
    assert manifest["num_shards"] == used and manifest["requested_num_shards"] == num_shards
    assert [s["examples"] for s in manifest["shards"]] == [
        len(ids[i::used]) for i in range(used)]
    pattern = str(out / "train-*")
    for path in dataset_files.list_files(pattern):
        dataset_files.inspect_file(path)  # raises "the file holds no record" for an empty one
    parsed, _, _ = read_split(out)
    assert sorted(parsed) == sorted(ids)
    assert streams.read_ids(pattern) == [e["id"] for e in manifest["examples"]]
    # train.py's and eval.py's validation of the set (--train_data, --val_data).
    config = train_lib.TrainConfig(train_data=pattern, val_data=pattern,
                                   model_dir=str(tmp_path / "run"), init="random",
                                   num_labeled=1)
    train_lib.validate(config)
    # The same examples as a run with --num_shards equal to the examples: byte for byte.
    if num_shards > num_ids:
        again = tmp_path / "again"
        run(pascal_part_dir, again, split_list=str(_split_list(tmp_path, ids)),
            num_shards=used)
        for name in file_names(again):
            if name.endswith(".tfrecord"):
                assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_a_split_without_any_example_is_an_error_and_writes_nothing(pascal_part_dir,
                                                                    tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "val-00000-of-00001.tfrecord").write_bytes(b"another split")
    no_person = ["2010_000145", "2008_001978"]
    with pytest.raises(BadInputError, match=r"no example to write: all 2 ids were skipped "
                                            r"\(no person: 2, bad input: 0\)"):
        run(pascal_part_dir, out, split_list=str(_split_list(tmp_path, no_person)),
            num_shards=3)
    assert file_names(out) == ["val-00000-of-00001.tfrecord"]


# === Image orientation and format (issue 15 case 1) ===
# Annotations refer to the upright image a viewer shows. Expected values are built
# here with NumPy from the EXIF specification, never from the converter.

# What a viewer does with the stored pixels for each EXIF Orientation value.
DISPLAY = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),  # clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),  # counter-clockwise
}
# The stored pixels that display as a given upright image.
STORE = {1: DISPLAY[1], 2: DISPLAY[2], 3: DISPLAY[3], 4: DISPLAY[4], 5: DISPLAY[5],
         6: DISPLAY[8], 7: DISPLAY[7], 8: DISPLAY[6]}


def _write_mat(path, person, parts):
    """A Pascal-Part .mat: one person object with `parts` [(name, mask)]."""
    parts_arr = np.zeros((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
    for k, (name, mask) in enumerate(parts):
        parts_arr[0, k] = (np.array([name]), mask.astype(np.uint8))
    objects = np.zeros((1, 1), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"),
                                      ("parts", "O")])
    objects[0, 0] = (np.array(["person"]), np.array([[15]]), person.astype(np.uint8),
                     parts_arr)
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (np.array([pathlib.Path(path).stem]), objects)
    scipy.io.savemat(str(path), {"anno": anno})


def _upright_scene(height, width):
    """(upright RGB image, person mask, head mask): a red person with a blue head on grey."""
    image = np.full((height, width, 3), 128, np.uint8)
    person = np.zeros((height, width), bool)
    person[height // 4:height - 4, width // 5:width // 2] = True
    head = np.zeros_like(person)
    head[height // 4:height // 4 + 8, width // 5:width // 2] = True
    image[person] = (220, 30, 30)
    image[head] = (30, 30, 220)
    return image, person, head


def _save_jpeg(path, stored, orientation=None, **kw):
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(stored).save(path, format="JPEG", quality=95, subsampling=0,
                                 exif=exif, **kw)


def _decode_record(serialized):
    from pipelines import decode

    example = decode.decode_example(serialized)
    return {k: v.numpy() for k, v in example.items()}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("height,width", [(64, 96), (72, 72)])
def test_exif_orientation_is_applied_so_the_maps_cover_the_right_pixels(
        tmp_path, orientation, height, width):
    upright, person, head = _upright_scene(height, width)
    directory = tmp_path / "in"
    directory.mkdir()
    stored = np.ascontiguousarray(STORE[orientation](upright))
    assert np.array_equal(DISPLAY[orientation](stored), upright)
    _save_jpeg(directory / "img_1.jpg", stored, orientation)
    # What a viewer (and labelme, which applies the tag) shows is the upright image.
    from PIL import ImageOps
    with Image.open(directory / "img_1.jpg") as im:
        assert np.abs(np.asarray(ImageOps.exif_transpose(im), np.int16)
                      - upright).mean() < 3
    _write_mat(directory / "img_1.mat", person, [("head", head)])

    manifest = run(directory, tmp_path / "out")
    assert manifest["counts"]["written"] == 1, manifest["skipped"]
    (serialized,) = read_shard(tmp_path / "out" / "train-00000-of-00001.tfrecord")
    ex = _decode_record(serialized)  # as the training pipeline decodes it
    assert ex["image"].shape == (height, width, 3)
    # The pixels under the part map are the part's colour: head blue, person red.
    assert (ex["parts_fine"] == schema.PART_ID["head"]).sum() == head.sum()
    head_pixels = ex["image"][ex["parts_fine"] == schema.PART_ID["head"]].mean(axis=0)
    body_pixels = ex["image"][(ex["person_mask"] > 0) & (ex["parts_fine"] == 0)].mean(axis=0)
    assert head_pixels[2] > 180 and head_pixels[0] < 80, head_pixels
    assert body_pixels[0] > 180 and body_pixels[2] < 80, body_pixels
    assert np.abs(ex["image"].astype(np.int16) - upright).mean() < 4
    entry = manifest["examples"][0]
    assert entry.get("exif_orientation", 1) == orientation
    assert manifest["counts"]["turned_upright"] == int(orientation != 1)


def test_masks_drawn_on_the_stored_pixels_are_refused_naming_the_tag(tmp_path):
    upright, person, head = _upright_scene(64, 96)
    directory = tmp_path / "in"
    directory.mkdir()
    _save_jpeg(directory / "img_1.jpg", np.ascontiguousarray(STORE[6](upright)), 6)
    # Masks of the stored (96 x 64) pixels, not of the upright (64 x 96) image.
    _write_mat(directory / "img_1.mat", STORE[6](person), [("head", STORE[6](head))])
    with pytest.raises(BadInputError) as e:
        run(directory, tmp_path / "out", on_error="fail")
    reason = str(e.value)
    assert reason.startswith(str(directory / "img_1.mat")), reason
    assert ("mask is 96x64 (HxW), but the image is 64x96 as shown upright: its EXIF "
            "Orientation tag is 6 (rotated 90° clockwise)") in reason, reason
    assert "drawn on the pixels before the rotation" in reason


def _jpeg_variants(directory):
    """{name: bytes} of image files named .jpg: JPEGs of every kind, and non-JPEGs."""
    upright, _, _ = _upright_scene(64, 96)
    im = Image.fromarray(upright)
    out = {}

    def save(name, image, fmt="JPEG", **kw):
        buf = io.BytesIO()
        image.save(buf, format=fmt, **kw)
        out[name] = buf.getvalue()

    save("baseline", im, quality=90)
    save("progressive", im, quality=90, progressive=True)
    save("grayscale", im.convert("L"))
    save("cmyk", im.convert("CMYK"))
    save("restart_markers", im, restart_marker_blocks=1)
    save("mpo", im, fmt="MPO", save_all=True, append_images=[im.transpose(0)])
    for value in (0, 1, 9):  # 0 and 9 are outside 1..8: viewers show the stored pixels
        exif = Image.Exif()
        exif[0x0112] = value
        save(f"orientation_{value}", im, exif=exif)
    save("png", im, fmt="PNG")
    save("gif", im, fmt="GIF")
    save("webp", im, fmt="WEBP")
    out["truncated"] = out["baseline"][:len(out["baseline"]) // 2]
    out["truncated_scan"] = out["baseline"][:-300]  # the header whole: Pillow opens it
    out["soi_then_garbage"] = b"\xff\xd8\xff" + bytes(range(256)) * 4
    return out


def test_what_the_converter_accepts_is_what_the_pipeline_decodes(tmp_path):
    """For each kind of file: written by the converter <=> decoded by the pipeline's
    decode_example from the file's bytes; and what is written decodes."""
    from pipelines import records as records_lib

    directory = tmp_path / "in"
    directory.mkdir()
    _, person, head = _upright_scene(64, 96)
    variants = _jpeg_variants(directory)
    for name, data in variants.items():
        (directory / f"{name}.jpg").write_bytes(data)
        _write_mat(directory / f"{name}.mat", person, [("head", head)])
    manifest = run(directory, tmp_path / "out", num_shards=1)
    written = {e["id"] for e in manifest["examples"]}
    reasons = {s["id"]: s["reason"] for s in manifest["skipped"]}
    parsed, serialized, _ = read_split(tmp_path / "out")
    for record in serialized:
        assert _decode_record(record)["image"].shape == (64, 96, 3)
    for name, data in variants.items():
        raw = records_lib.make_example(
            jpeg=data, image_id=name, height=64, width=96, boxes=np.zeros((1, 4)),
            person_mask=person.astype(np.uint8), parts_fine=head.astype(np.uint8))
        try:
            _decode_record(raw)
            decodes = True
        except tf.errors.InvalidArgumentError:
            decodes = False
        assert (name in written) == decodes, (name, reasons.get(name))
    # The JPEGs Pillow calls something else (MPO) or that hold odd EXIF are written.
    assert {"baseline", "progressive", "grayscale", "cmyk", "restart_markers", "mpo",
            "orientation_0", "orientation_1", "orientation_9"} <= written, reasons
    assert "not a JPEG image (PIL reads it as PNG)" in reasons["png"]
    for name in ("truncated", "truncated_scan", "soi_then_garbage"):
        assert reasons[name].startswith(f"{directory / name}.jpg: corrupt or truncated JPEG")
    # Refused by the pipeline's own decoder, in the converter's parent.
    assert "TensorFlow cannot decode it (tf.io.decode_jpeg" in reasons["truncated_scan"]
    # Written as they are: no orientation to apply.
    assert parsed["mpo"]["jpeg"] == variants["mpo"]
    assert parsed["orientation_9"]["jpeg"] == variants["orientation_9"]
