"""Tests of pipelines/dataset_files.py: shard names, manifests, listing, the schema check."""

import json

import numpy as np
import pytest
from tensorflow.core.example import example_pb2, feature_pb2

import pipeline_helpers as ph
from pipelines import dataset_files, records, schema


def _example_without(serialized, drop=(), replace=None):
    """The serialized example with keys dropped / features replaced."""
    ex = example_pb2.Example.FromString(serialized)
    for key in drop:
        del ex.features.feature[key]
    for key, feature in (replace or {}).items():
        ex.features.feature[key].CopyFrom(feature)
    return ex.SerializeToString()


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """4 tiny synthetic examples in 2 shards, no manifest: (pattern, arrays)."""
    directory = tmp_path_factory.mktemp("records")
    arrays = [ph.synthetic_arrays(f"2008_{i:06d}", height=8, width=9 + i, seed=i)
              for i in range(4)]
    ph.write_split(directory, "train", arrays, 2)
    return str(directory / "train-*.tfrecord"), arrays


# === Names ===

def test_shard_and_manifest_names_and_their_parse():
    assert dataset_files.shard_name("train", 3, 16) == "train-00003-of-00016.tfrecord"
    assert dataset_files.manifest_name("val") == "val.manifest.json"
    assert dataset_files.parse_shard_name("/d/val-00001-of-00004.tfrecord") == ("val", 1, 4)
    assert dataset_files.parse_shard_name("/d/val-00001-of-00004.tfrecords") == ("val", 1, 4)
    assert dataset_files.parse_shard_name("/d/val.tfr") == ("val", None, 1)
    assert dataset_files.manifest_path("/d/x-00000-of-00002.tfrecord") == \
        "/d/x.manifest.json"
    files = ["/d/val-00000-of-00002.tfrecord", "/d/val-00001-of-00002.tfrecord"]
    assert dataset_files.split_name(files, "/d/val-*") == "val"
    assert dataset_files.split_name(["/d/a.tfrecord", "/d/b.record"], "/d/*") == "data"


def test_write_manifest_is_atomic_and_read_back(tmp_path):
    path = dataset_files.write_manifest(str(tmp_path), "train", {"counts": {"written": 2}})
    assert path == str(tmp_path / "train.manifest.json")
    assert dataset_files.read_manifest(path) == {"counts": {"written": 2}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.manifest.json"]
    assert dataset_files.read_manifest(str(tmp_path / "none.manifest.json")) is None


# === Listing and ids ===

def test_list_files_sorted_and_comma_separated(tmp_path):
    for name in ("b.tfrecord", "a.tfrecord", "c.rec"):
        ph.write_tfrecord(tmp_path / name, [])
    assert dataset_files.list_files(str(tmp_path / "*.tfrecord")) == [
        str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
    both = f"{tmp_path / 'c.rec'}, {tmp_path / '*.tfrecord'}"
    assert dataset_files.list_files(both) == sorted(str(tmp_path / n) for n in
                                                    ("a.tfrecord", "b.tfrecord", "c.rec"))
    missing = str(tmp_path / "train-*")
    with pytest.raises(ValueError, match="no file matches") as err:
        dataset_files.list_files(missing)
    assert missing in str(err.value)
    with pytest.raises(ValueError, match="nope"):
        dataset_files.list_files(f"{tmp_path / 'a.tfrecord'},{tmp_path / 'nope*'}")


def test_read_ids_scans_records_in_file_order(split):
    pattern, arrays = split
    assert dataset_files.read_ids(pattern) == ph.ids_in_file_order(arrays, 2)


def test_read_ids_prefers_a_complete_ids_manifest(tmp_path):
    arrays = [ph.synthetic_arrays(f"m{i}", height=6, width=6, seed=i) for i in range(4)]
    # The manifest lists the ids in an order the records do not have, so the test can
    # tell which one was read.
    listed = ["m3", "m2", "m1", "m0"]
    ph.write_split(tmp_path, "train", arrays, 2, manifest=listed)
    assert dataset_files.read_ids(str(tmp_path / "train-*")) == listed
    # `train*` also matches the manifest, which is not a record file.
    assert dataset_files.list_files(str(tmp_path / "train*")) == dataset_files.list_files(
        str(tmp_path / "train-*"))
    assert dataset_files.read_ids(str(tmp_path / "train*")) == listed
    # One shard of two: a plain id list does not say which ids it holds; scanned.
    assert dataset_files.read_ids(str(tmp_path / "train-00001-of-00002.tfrecord")) == \
        ["m1", "m3"]


def test_read_ids_from_a_per_shard_manifest(tmp_path):
    # The layout of tools/make_tfrecords.py: per-shard counts, examples in shard order.
    arrays = [ph.synthetic_arrays(f"m{i}", height=6, width=6, seed=i) for i in range(5)]
    shard0, shard1 = "val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"
    listed = {shard0: ["x0", "x2", "x4"], shard1: ["x1", "x3"]}  # not the records' ids
    ph.write_split(tmp_path, "val", arrays, 2, manifest=listed)
    assert dataset_files.read_ids(str(tmp_path / "val-*")) == ["x0", "x2", "x4", "x1", "x3"]
    assert dataset_files.read_ids(str(tmp_path / shard1)) == ["x1", "x3"]
    # A manifest that does not add up is not trusted: the records are scanned.
    content = json.loads((tmp_path / "val.manifest.json").read_text())
    content["shards"][0]["examples"] = 2
    (tmp_path / "val.manifest.json").write_text(json.dumps(content))
    assert dataset_files.read_ids(str(tmp_path / "val-*")) == ["m0", "m2", "m4", "m1", "m3"]


# === The schema check ===

def test_check_files_accepts_our_files_and_tells_the_vocabulary(split):
    pattern, _ = split
    info = dataset_files.check_files(pattern)
    assert len(info.files) == 2 and info.vocabulary == schema.PASCAL_PART
    assert info.boxes_files == () and info.parts_files == info.files


def test_a_record_of_schema_version_1_is_pascal_part_with_parts(tmp_path):
    """Records written before annotation/kind and parts/vocabulary existed."""
    serialized = _example_without(ph.serialize(ph.synthetic_arrays("old")),
                                  drop=(schema.KEY_ANNOTATION, schema.KEY_VOCABULARY))
    path = ph.write_tfrecord(tmp_path / "old.tfrecord", [serialized])
    info = dataset_files.inspect_file(path)
    assert (info.annotation, info.vocabulary) == ("parts", schema.PASCAL_PART)
    assert records.parse_example(serialized)["vocabulary"] == schema.PASCAL_PART


def test_check_files_names_file_and_missing_keys(tmp_path):
    serialized = _example_without(ph.serialize(ph.synthetic_arrays("a")),
                                  drop=(schema.KEY_PERSON_MASK, schema.KEY_ID))
    path = ph.write_tfrecord(tmp_path / "other.tfrecord", [serialized])
    with pytest.raises(ValueError) as err:
        dataset_files.check_files(path)
    message = str(err.value)
    assert path in message and "person/mask" in message and "image/id" in message


def test_check_files_names_mistyped_key(tmp_path):
    serialized = _example_without(ph.serialize(ph.synthetic_arrays("a")), replace={
        schema.KEY_HEIGHT: feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[8.]))})
    path = ph.write_tfrecord(tmp_path / "typed.tfrecord", [serialized])
    with pytest.raises(ValueError, match="image/height holds float_list"):
        dataset_files.check_files(path)


def test_check_files_empty_file_and_no_match(tmp_path):
    path = ph.write_tfrecord(tmp_path / "empty.tfrecord", [])
    with pytest.raises(ValueError, match="holds no record") as err:
        dataset_files.check_files(path)
    assert path in str(err.value)
    pattern = str(tmp_path / "nothing-*.tfrecord")
    with pytest.raises(ValueError, match="no file matches") as err:
        dataset_files.check_files(pattern)
    assert pattern in str(err.value)


def test_check_files_refuses_a_file_that_is_not_tfrecord(tmp_path):
    path = tmp_path / "notes.tfrecord"
    path.write_bytes(b"this is not a TFRecord file at all, just some text")
    with pytest.raises(ValueError, match="notes.tfrecord"):
        dataset_files.check_files(str(path))


def _lip_like_record(image_id, vocabulary):
    arrays = ph.synthetic_arrays(image_id, height=8, width=8, seed=1)
    return records.make_example(
        jpeg=ph.jpeg_bytes(arrays["image"]), image_id=image_id, height=8, width=8,
        boxes=arrays["boxes"], person_mask=arrays["person_mask"],
        parts_fine=np.minimum(arrays["parts_fine"], len(vocabulary.part_names)),
        vocabulary=vocabulary)


def test_mixed_vocabularies_are_refused_naming_both_files(tmp_path):
    lip = schema.Vocabulary(["Hat", "Hair", "Face", "Left-arm", "Right-arm"], name="lip")
    a = ph.write_tfrecord(tmp_path / "a-00000-of-00001.tfrecord",
                          [ph.serialize(ph.synthetic_arrays("p"))])
    b = ph.write_tfrecord(tmp_path / "b-00000-of-00001.tfrecord",
                          [_lip_like_record("l", lip)])
    assert dataset_files.check_files(b).vocabulary == lip
    with pytest.raises(ValueError, match="2 different part vocabularies") as err:
        dataset_files.check_files(str(tmp_path / "*.tfrecord"))
    assert a in str(err.value) and b in str(err.value)
    assert "pascal_part (24 parts" in str(err.value) and "Hat, Hair" in str(err.value)


def test_box_only_files_are_refused_where_parts_are_needed(tmp_path):
    arrays = ph.synthetic_arrays("b", height=8, width=8)
    boxes_only = records.make_example(jpeg=ph.jpeg_bytes(arrays["image"]), image_id="b",
                                      height=8, width=8, boxes=arrays["boxes"])
    parts = ph.write_tfrecord(tmp_path / "parts.tfrecord", [ph.serialize(arrays)])
    boxes = ph.write_tfrecord(tmp_path / "boxes.tfrecord", [boxes_only])
    with pytest.raises(ValueError, match="carries no part labels") as err:
        dataset_files.check_files(boxes)
    assert boxes in str(err.value) and "--unlabeled_data" in str(err.value)
    both = dataset_files.check_files(f"{parts},{boxes}", need_parts=False)
    assert both.boxes_files == (boxes,) and both.parts_files == (parts,)
    assert both.vocabulary == schema.PASCAL_PART
    parsed = records.parse_example(boxes_only)
    assert parsed["annotation"] == "boxes" and parsed["parts_fine"] is None


def test_one_owner_and_no_import_cycle():
    """decode.py and streams.py no longer import each other; the owner of the files
    imports neither; nobody else spells a shard name."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]

    def imported(module):
        tree = ast.parse((root / "pipelines" / f"{module}.py").read_text())
        names = set()
        for node in ast.walk(tree):  # function-level imports too
            if isinstance(node, ast.ImportFrom) and node.module == "pipelines":
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipelines."):
                names.add(node.module.split(".")[1])
        return names

    assert "streams" not in imported("decode")
    assert not {"decode", "streams"} & imported("dataset_files")
    assert "dataset_files" in imported("streams")
    for path in list((root / "pipelines").glob("*.py")) + list((root / "coseg_tf").glob("*.py")) \
            + [root / "tools" / "make_tfrecords.py"]:
        if path.name != "dataset_files.py":
            assert "-of-%05d" not in path.read_text() and "of-\\d" not in path.read_text(), path
