"""Tests of coseg_tf/predict.py and predict.py: label maps of new photos.

The run-directory path and the SavedModel path (its serving_default signature, called
as TF Serving would) must give identical label maps. The end-to-end test trains on
labeled fixture records with box-only unlabeled records, then predicts from both.
"""

import io
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import pipeline_helpers as ph
from coseg_tf import export as export_lib
from coseg_tf import model as model_lib
from coseg_tf import predict as predict_lib
from coseg_tf import trainer as trainer_lib
from coseg_tf import visualize
from pipelines import schema

REPO = pathlib.Path(__file__).resolve().parents[1]
SCHEME = schema.get_scheme("all4")
INFO = {"architecture": "deeplab_largefov", "parts": SCHEME.name,
        "class_names": list(SCHEME.class_names), "num_classes": SCHEME.num_classes,
        "width_multiplier": 0.0625, "human_region": "boxes", "scheme": SCHEME.to_json(),
        "vocabulary": schema.PASCAL_PART.to_json()}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(run directory, SavedModel path) of one tiny random network with a lively fc8
    (its labels differ from pixel to pixel, so the comparisons test something)."""
    root = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(3)
    network = model_lib.build_deeplab_largefov(num_classes=SCHEME.num_classes,
                                               width_multiplier=0.0625)
    fc8 = network.get_layer("fc8")
    rng = np.random.default_rng(3)
    kernel, bias = fc8.get_weights()
    fc8.set_weights([rng.normal(0.0, 2.0, kernel.shape).astype(np.float32),
                     rng.normal(0.0, 0.5, bias.shape).astype(np.float32)])
    trainer = trainer_lib.CosegTrainer(network, num_classes=SCHEME.num_classes,
                                       objective="supervised")
    trainer.build()
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    trainer.save_weights(str(run / "checkpoints" / "last.weights.h5"))
    (run / "model.json").write_text(json.dumps(INFO, indent=2) + "\n")
    saved = export_lib.export_saved_model(network, INFO, str(root / "export"))
    return run, saved


@pytest.fixture
def photos(tmp_path):
    """A folder of a JPEG, a PNG (with alpha) and a JPEG stored on its side (EXIF 6)."""
    directory = tmp_path / "photos"
    directory.mkdir()
    rng = np.random.RandomState(0)
    (directory / "a.jpg").write_bytes(ph.jpeg_bytes(rng.randint(0, 256, (73, 89, 3))))
    Image.fromarray(rng.randint(0, 256, (65, 81, 4)).astype(np.uint8), "RGBA").save(
        directory / "b.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display: the upright image is 80 x 48
    Image.fromarray(rng.randint(0, 256, (48, 80, 3)).astype(np.uint8)).save(
        directory / "c.JPG", exif=exif, quality=95)
    (directory / "notes.txt").write_text("not an image")
    return directory


def _config(model, which, photos, out, **kw):
    run, saved = model
    kw.setdefault("whole_image", True)
    kw.setdefault("verbose", 0)
    return predict_lib.PredictConfig(images=str(photos), output_dir=str(out),
                                     **({"model_dir": str(run)} if which == "run"
                                        else {"saved_model": saved}), **kw)


def _label_map(path):
    with Image.open(path) as im:
        assert im.mode == "P"
        return np.asarray(im)


def test_run_directory_and_saved_model_give_identical_label_maps(model, photos, tmp_path):
    outs = {}
    for which in ("run", "saved"):
        summary = predict_lib.predict(_config(model, which, photos, tmp_path / which))
        assert summary["counts"] == {"images": 3, "written": 3, "skipped": 0,
                                     "skipped_no_person_box": 0, "skipped_bad_file": 0}
        outs[which] = {i: _label_map(tmp_path / which / f"{i}.png") for i in "abc"}
    assert outs["run"]["c"].shape == (80, 48)  # the upright image
    assert outs["run"]["b"].shape == (65, 81)
    seen = set()
    for image_id in "abc":
        np.testing.assert_array_equal(outs["run"][image_id], outs["saved"][image_id])
        seen |= set(np.unique(outs["run"][image_id]).tolist())
    assert seen <= set(range(SCHEME.num_classes)) and len(seen) > 2  # not one class
    # The run-directory path computes what the network gives (a direct call).
    from coseg_tf import run_dir
    network, _ = run_dir.load_network(str(model[0]))
    image = np.asarray(Image.open(photos / "a.jpg").convert("RGB"))
    server = export_lib.SegmentationServer(network)  # held: tf.function keeps a weakref
    direct = server.serve_boxes(tf.constant(image[None]),
                                tf.constant([[[0.0, 0.0, 1.0, 1.0]]]))["labels"][0]
    np.testing.assert_array_equal(outs["run"]["a"], direct.numpy())
    legend = json.loads((tmp_path / "run" / "legend.json").read_text())
    assert [c["name"] for c in legend["classes"]] == list(SCHEME.class_names)
    colors = visualize.class_colors(SCHEME.class_names)
    assert [c["color"] for c in legend["classes"]] == colors.tolist()
    assert legend["scheme"]["name"] == "all4"
    with Image.open(tmp_path / "run" / "a.png") as im:  # the palette is the legend's
        assert im.getpalette()[:3 * SCHEME.num_classes] == colors.reshape(-1).tolist()
    with Image.open(tmp_path / "run" / "a_overlay.jpg") as im:
        assert im.format == "JPEG" and im.size == (89, 73)


def test_coco_boxes_no_box_and_bad_files_are_named_and_skipped(model, photos, tmp_path):
    (photos / "d.jpg").write_bytes(b"\xff\xd8\xff broken")
    detections = tmp_path / "detections.json"
    detections.write_text(json.dumps([
        {"image_id": "a", "category_id": 1, "bbox": [5, 5, 20, 25], "score": 0.9},
        {"image_id": "b", "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.2},
        {"image_id": "c", "category_id": 1, "bbox": [2, 3, 10, 30], "score": 0.7}]))
    summary = predict_lib.predict(_config(model, "saved", photos, tmp_path / "out",
                                          whole_image=False, coco_file=str(detections)))
    assert summary["counts"] == {"images": 4, "written": 2, "skipped": 2,
                                 "skipped_no_person_box": 1, "skipped_bad_file": 1}
    skipped = {pathlib.Path(s["image"]).name: s for s in summary["skipped"]}
    assert skipped["b.png"]["kind"] == "no person box"
    assert "d.jpg: not a readable JPEG or PNG" in skipped["d.jpg"]["reason"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png", "c.png"]
    np.testing.assert_allclose(summary["written"][0]["boxes"],
                               [[5 / 73, 5 / 89, 30 / 73, 25 / 89]], rtol=1e-6)
    labels = _label_map(tmp_path / "out" / "a.png")
    assert labels.shape == (73, 89)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["counts"] == \
        summary["counts"]


@pytest.mark.parametrize("change, message", [
    ({"whole_image": False}, "exactly one of --coco_file, --voc_annotations_dir"),
    ({"voc_annotations_dir": "/nonexistent"}, "exactly one of"),
    ({"model_dir": "RUN", "saved_model": "SAVED"}, "exactly one of --model_dir"),
    ({"images": "NOTHING"}, "no file matches"),
    ({"images": "DUPLICATE"}, "the same id 'a'"),
])
def test_refused_before_anything_is_written(model, photos, tmp_path, change, message):
    change = dict(change)
    if change.get("model_dir") == "RUN":
        change.update(model_dir=str(model[0]), saved_model=model[1])
    if change.get("images") == "NOTHING":
        change["images"] = str(tmp_path / "nothing-*.jpg")
    if change.get("images") == "DUPLICATE":
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(photos / "a.png")
        change["images"] = str(photos)
    config = _config(model, "run", photos, tmp_path / "out")
    for key, value in change.items():
        setattr(config, key, value)
    with pytest.raises(predict_lib.ConfigError, match=message):
        predict_lib.predict(config)
    assert not (tmp_path / "out").exists()


def test_console_scripts_point_at_the_programs():
    import configparser
    import importlib

    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    scripts = dict(line.split(" = ") for line in
                   parser["options.entry_points"]["console_scripts"].strip().splitlines())
    assert {"coseg-train", "coseg-eval", "coseg-export", "coseg-predict",
            "coseg-make-tfrecords", "coseg-make-synthetic"} <= set(scripts)
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


# === End to end (slow) ===

def _run(script, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True,
                          text=True, timeout=900, cwd=REPO, env=env)


@pytest.mark.slow
def test_train_with_box_only_unlabeled_records_then_predict(pascal_part_dir, tmp_path):
    """Labeled fixture records + box-only unlabeled records (COCO detections) -> a
    coseg run -> export -> predict.py from the run and from the SavedModel: the same
    label maps."""
    from tools import make_tfrecords

    labeled = ("2008_000652", "2008_000700", "2008_000726", "2008_000939")
    pool = ("2008_003228", "2009_001103", "2010_002526", "2010_005243")
    (tmp_path / "labeled.txt").write_text("\n".join(labeled) + "\n")
    make_tfrecords.convert(pascal_part_dir=str(pascal_part_dir),
                           images_dir=str(pascal_part_dir),
                           split_list=str(tmp_path / "labeled.txt"),
                           output_dir=str(tmp_path / "tfr"), progress=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    detections = []
    for image_id in pool:
        data = (pascal_part_dir / f"{image_id}.jpg").read_bytes()
        (photos / f"{image_id}.jpg").write_bytes(data)
        width, height = Image.open(io.BytesIO(data)).size
        detections += [{"image_id": image_id, "category_id": 1, "score": 0.8,
                        "bbox": [width * 0.2, height * 0.1, width * 0.5, height * 0.8]},
                       {"image_id": image_id, "category_id": 1, "score": 0.1,
                        "bbox": [0, 0, 10, 10]}]
    (tmp_path / "detections.json").write_text(json.dumps(detections))
    manifest = make_tfrecords.convert(source="boxes_only", images_dir=str(photos),
                                      coco_file=str(tmp_path / "detections.json"),
                                      split_name="pool", output_dir=str(tmp_path / "tfr"),
                                      progress=False)
    assert manifest["counts"]["written"] == 4
    assert manifest["counts"]["boxes_below_min_score"] == 4

    run = tmp_path / "run"
    trained = _run("train.py", f"--train_data={tmp_path / 'tfr' / 'train-*'}",
                   f"--unlabeled_data={tmp_path / 'tfr' / 'pool-*'}",
                   f"--model_dir={run}", "--method=coseg", "--init=random",
                   "--width_multiplier=0.0625", "--crop_size=65", "--batch_labeled=1",
                   "--batch_unlabeled=2", "--num_labeled=2", "--steps=2",
                   "--checkpoint_every=2", "--strategy=default", "--verbose=0")
    assert trained.returncode == 0, trained.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["unlabeled_data"] == str(tmp_path / "tfr" / "pool-*")
    info = json.loads((run / "model.json").read_text())
    assert info["scheme"]["name"] == "all4" and info["vocabulary"]["name"] == "pascal_part"
    exported = _run("export.py", f"--model_dir={run}", f"--export_dir={tmp_path / 'export'}")
    assert exported.returncode == 0, exported.stderr[-3000:]

    images = tmp_path / "new"
    images.mkdir()
    for image_id in ("2010_005275", "2010_005511"):
        (images / f"{image_id}.jpg").write_bytes((pascal_part_dir / f"{image_id}.jpg").read_bytes())
    Image.open(pascal_part_dir / "2010_001199.jpg").save(images / "2010_001199.png")
    maps = {}
    for name, model_flag in (("run", f"--model_dir={run}"),
                             ("saved", f"--saved_model={tmp_path / 'export'}")):
        out = tmp_path / f"out_{name}"
        result = _run("predict.py", model_flag, f"--images={images}", "--whole_image",
                      f"--output_dir={out}")
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"wrote 3 label maps of 3 images to {out}; skipped 0" in result.stderr
        maps[name] = {p.name: _label_map(p) for p in sorted(out.glob("*.png"))}
    assert sorted(maps["run"]) == ["2010_001199.png", "2010_005275.png", "2010_005511.png"]
    for name in maps["run"]:
        np.testing.assert_array_equal(maps["run"][name], maps["saved"][name], err_msg=name)
    refused = _run("predict.py", f"--model_dir={run}", f"--images={images}",
                   f"--output_dir={tmp_path / 'x'}")
    assert refused.returncode == 2 and "exactly one of --coco_file" in refused.stderr
