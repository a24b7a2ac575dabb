"""train.py's data flags on one's own data (coseg_tf/train_lib.py check_data): box-only
records as --unlabeled_data, vocabularies, JSON schemes; all refused before any work."""

import json

import numpy as np
import pytest

import pipeline_helpers as ph
from coseg_tf import train_lib
from pipelines import records, schema

LIP = schema.Vocabulary(["Hat", "Hair", "Face", "Upper-clothes", "Left-arm", "Right-arm",
                         "Pants"], name="lip_small")


def _lip_split(directory, n=3):
    examples = []
    for i in range(n):
        arrays = ph.synthetic_arrays(f"lip_{i}", height=12, width=14, seed=i)
        examples.append(records.make_example(
            jpeg=ph.jpeg_bytes(arrays["image"]), image_id=arrays["id"], height=12, width=14,
            boxes=arrays["boxes"], person_mask=arrays["person_mask"],
            parts_fine=np.minimum(arrays["parts_fine"], len(LIP.part_names)),
            vocabulary=LIP))
    return ph.write_tfrecord(directory / "lip-00000-of-00001.tfrecord", examples)


def _boxes_split(directory, n=3):
    examples = []
    for i in range(n):
        arrays = ph.synthetic_arrays(f"box_{i}", height=12, width=14, seed=10 + i)
        examples.append(records.make_example(
            jpeg=ph.jpeg_bytes(arrays["image"]), image_id=arrays["id"], height=12, width=14,
            boxes=arrays["boxes"]))
    return ph.write_tfrecord(directory / "boxes-00000-of-00001.tfrecord", examples)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    arrays = [ph.synthetic_arrays(f"pp_{i}", height=12, width=14, seed=i) for i in range(4)]
    ph.write_split(directory, "train", arrays, 1)
    lip4 = directory / "lip3.json"
    lip4.write_text(json.dumps({"classes": [
        {"name": "head", "parts": ["Hat", "Hair", "Face"]},
        {"name": "body", "parts": ["Upper-clothes", "Pants"]},
        {"name": "arms", "parts": ["Left-arm", "Right-arm"]}]}))
    return {"parts": str(directory / "train-*"), "lip": _lip_split(directory),
            "boxes": _boxes_split(directory), "lip_scheme": str(lip4), "dir": directory}


def _config(tmp_path, **kw):
    kw.setdefault("init", "random")
    kw.setdefault("num_labeled", 2)
    return train_lib.TrainConfig(model_dir=str(tmp_path / "run"), **kw)


def test_box_only_records_feed_the_unlabeled_stream(data, tmp_path):
    config = _config(tmp_path, train_data=data["parts"],
                     unlabeled_data=f"{data['boxes']},{data['parts']}")
    scheme, all_ids, labeled = train_lib.validate(config)
    assert scheme.vocabulary == schema.PASCAL_PART and len(all_ids) == 4 and len(labeled) == 2


@pytest.mark.parametrize("change, message", [
    ({"train_data": "boxes"}, "carries no part labels"),
    ({"val_data": "boxes"}, "carries no part labels"),
    ({"unlabeled_data": "boxes", "diagnostics": True},
     "--diagnostics read(s) the part labels of the unlabeled images"),
    ({"unlabeled_data": "boxes", "method": "gmp"}, "--method=gmp (image-level labels)"),
    ({"unlabeled_data": "boxes", "human_region": "instance"}, "--human_region=boxes"),
    ({"unlabeled_data": "boxes", "method": "supervised"}, "reads no unlabeled images"),
    ({"val_data": "lip"}, "records of different vocabularies cannot be mixed"),
    ({"train_data": "parts,lip"}, "different part vocabularies and cannot be mixed"),
    ({"unlabeled_data": "lip", "diagnostics": True}, "different vocabularies"),
    ({"parts": "lip_scheme"}, "names 7 part(s) that the vocabulary pascal_part"),
    ({"train_data": "lip", "parts": "all4"}, "names 24 part(s) that the vocabulary"),
])
def test_refused_naming_the_flag_and_the_file(data, tmp_path, change, message):
    kw = {"train_data": data["parts"]}
    for flag, value in change.items():
        kw[flag] = ",".join(data[v] for v in value.split(",")) if isinstance(value, str) \
            and all(v in data for v in value.split(",")) else value
    with pytest.raises(train_lib.ConfigError) as err:
        train_lib.run_training(_config(tmp_path, **kw))
    assert message in str(err.value), str(err.value)
    flag = next(iter(change))
    assert f"--{flag}" in str(err.value)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_json_scheme_over_its_vocabulary(data, tmp_path):
    config = _config(tmp_path, train_data=data["lip"], parts=data["lip_scheme"],
                     unlabeled_data=data["boxes"])
    scheme, _, _ = train_lib.validate(config)
    assert scheme.name == "lip3" and scheme.vocabulary == LIP
    assert scheme.class_names == ("background", "head", "body", "arms")
    assert scheme.lookup_table().tolist() == [0, 1, 1, 1, 2, 3, 3, 2]
