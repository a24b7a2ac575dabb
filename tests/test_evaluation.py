"""Tests of coseg_tf/evaluation.py and coseg_tf/visualize.py.

Hand-computed confusion matrix and IoU (an absent class, the ignore label), the paper's
table rows, the stride-8 alignment of the bilinear upsampling, test-time augmentation,
and `evaluate` end to end on a tiny run directory and on a tiny SavedModel.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import pipeline_helpers as ph
from coseg_tf import evaluation, visualize
from coseg_tf import model as model_lib
from coseg_tf import trainer as trainer_lib
from pipelines import schema, streams

ALL4 = list(schema.get_scheme("all4").class_names)


# === Helpers (also used by test_eval_cli.py) ===

def write_eval_records(directory, sizes=((24, 33), (17, 20), (30, 26)), split="val"):
    """DIR/SPLIT-00000-of-00001.tfrecord with one synthetic example per (H, W)."""
    arrays = [ph.synthetic_arrays(f"img{i}", height=h, width=w, seed=i)
              for i, (h, w) in enumerate(sizes)]
    path = os.path.join(str(directory), f"{split}-00000-of-00001.tfrecord")
    ph.write_tfrecord(path, [ph.serialize(a) for a in arrays])
    return path


def write_model_json(model_dir, parts, width_multiplier=0.0625, human_region="boxes"):
    """model.json as train_lib.run_training writes it."""
    scheme = schema.get_scheme(parts)
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "model.json"), "w") as f:
        json.dump({"architecture": "deeplab_largefov", "parts": scheme.name,
                   "class_names": list(scheme.class_names),
                   "num_classes": scheme.num_classes,
                   "width_multiplier": width_multiplier,
                   "human_region": human_region}, f, indent=2)


def make_run_dir(model_dir, parts="all4", seed=0):
    """A run directory with an untrained width-0.0625 network: model.json + last/best."""
    scheme = schema.get_scheme(parts)
    keras.utils.set_random_seed(seed)
    network = model_lib.build_deeplab_largefov(num_classes=scheme.num_classes,
                                               width_multiplier=0.0625)
    # Larger fc8 weights than the init's 0.01 so that predictions vary over the image.
    fc8 = network.get_layer("fc8")
    kernel, bias = fc8.get_weights()
    fc8.set_weights([kernel * 300.0, bias])
    trainer = trainer_lib.CosegTrainer(network, num_classes=scheme.num_classes,
                                       objective="supervised")
    trainer.compile(optimizer=keras.optimizers.SGD(momentum=0.9))
    trainer.build()
    trainer.optimizer.build(network.trainable_variables)
    os.makedirs(os.path.join(model_dir, "checkpoints"), exist_ok=True)
    for name in ("last", "best"):
        trainer.save_weights(os.path.join(model_dir, "checkpoints", f"{name}.weights.h5"))
    write_model_json(model_dir, parts)
    return network


def reference_upsample(logits, size):
    """Independent reference: align-corners bilinear to 8 (h - 1) + 1, edge padding."""
    h, w = logits.shape[1:3]
    full = tf.compat.v1.image.resize_bilinear(logits, [8 * (h - 1) + 1, 8 * (w - 1) + 1],
                                              align_corners=True).numpy()
    height, width = size
    full = full[:, :height, :width]
    pad = [(0, 0), (0, height - full.shape[1]), (0, width - full.shape[2]), (0, 0)]
    return np.pad(full, pad, mode="edge")


def numpy_confusion(labels, predictions, num_classes):
    valid = labels != 255
    return np.bincount(labels[valid] * num_classes + predictions[valid],
                       minlength=num_classes ** 2).reshape(num_classes, num_classes)


# === Confusion matrix and IoU ===

def test_confusion_and_iou_hand_computed():
    names = ["background", "head", "body", "hand", "other"]
    labels = np.array([[0, 0, 1, 1],
                       [1, 2, 255, 0]])
    preds = np.array([[0, 1, 1, 1],
                      [0, 2, 3, 3]])
    # (gt, pred) pairs: (0,0) (0,1) (1,1) (1,1) (1,0) (2,2) (0,3); (255, 3) ignored.
    expected = np.array([[1, 1, 0, 1, 0],
                         [1, 2, 0, 0, 0],
                         [0, 0, 1, 0, 0],
                         [0, 0, 0, 0, 0],
                         [0, 0, 0, 0, 0]])
    cm = evaluation.confusion_matrix(labels, preds, 5).numpy()
    np.testing.assert_array_equal(cm, expected)

    metrics = evaluation.metrics_from_confusion(cm, names)
    # background 1 / (3 + 2 - 1); head 2 / (3 + 3 - 2); body 1 / 1; hand predicted once
    # but never labeled: 0; other absent from labels and predictions: undefined.
    assert metrics["iou"] == {"background": 0.25, "head": 0.5, "body": 1.0, "hand": 0.0,
                              "other": None}
    assert metrics["absent_classes"] == ["other"]
    # Mean without background, the absent class left out: (0.5 + 1 + 0) / 3.
    assert metrics["mean_iou"] == pytest.approx(0.5)
    assert metrics["mean_iou_classes"] == ["head", "body", "hand", "other"]
    assert metrics["part_mean_iou_classes"] == ["head", "body", "hand"]
    assert metrics["pixel_accuracy"] == pytest.approx(4 / 7)
    assert metrics["num_pixels"] == 7
    json.dumps(metrics)  # None, not NaN: valid JSON


def test_part_mean_leaves_other_out():
    # Diagonal confusion with some errors; "other" is perfect and must not lift the
    # Table 2 mean, only the background-free mean.
    cm = np.diag([50, 10, 10, 10, 10, 40])
    cm[1, 0] = 10  # head: 10 / 20
    metrics = evaluation.metrics_from_confusion(cm, ALL4)
    assert metrics["iou"]["head"] == pytest.approx(0.5)
    assert metrics["part_mean_iou"] == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert metrics["mean_iou"] == pytest.approx((0.5 + 1 + 1 + 1 + 1) / 5)
    assert metrics["part_mean_iou_classes"] == ["head", "body", "hand", "leg"]


def test_ignore_label_is_left_out_whatever_is_predicted():
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 3, size=(6, 7))
    labels[rng.rand(6, 7) < 0.4] = 255
    preds = rng.randint(0, 3, size=(6, 7))
    other_preds = np.where(labels == 255, (preds + 1) % 3, preds)
    a = evaluation.confusion_matrix(labels, preds, 3).numpy()
    b = evaluation.confusion_matrix(labels, other_preds, 3).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.sum() == (labels != 255).sum()
    np.testing.assert_array_equal(a, numpy_confusion(labels, preds, 3))


def test_confusion_under_tf_function_with_varying_sizes_and_range_check():
    fn = tf.function(lambda l, p: evaluation.confusion_matrix(l, p, 4), reduce_retracing=True)
    rng = np.random.RandomState(1)
    total = np.zeros((4, 4), np.int64)
    expected = np.zeros((4, 4), np.int64)
    for h, w in ((5, 6), (7, 3), (4, 9)):
        labels = rng.randint(0, 4, size=(1, h, w)).astype(np.int32)
        preds = rng.randint(0, 4, size=(1, h, w)).astype(np.int32)
        total += fn(labels, preds).numpy()
        expected += numpy_confusion(labels, preds, 4)
    np.testing.assert_array_equal(total, expected)
    with pytest.raises(tf.errors.InvalidArgumentError, match="out of range"):
        evaluation.confusion_matrix(np.array([[4]]), np.array([[0]]), 4)


# === Tables ===

def test_table2_row_reproduces_the_papers_mean():
    # Table 2, "Fully supervised only", 10 labeled: 42.2 26.4 7.6 23.6 -> mean 24.9.
    iou = {"background": 0.9, "head": 0.422, "body": 0.264, "hand": 0.076, "leg": 0.236,
           "other": 0.7}
    assert evaluation.format_table_header("all4").split() == [
        "head", "body", "hand", "leg", "mean"]
    assert evaluation.format_table_row(iou, "all4").split() == [
        "42.2", "26.4", "7.6", "23.6", "24.9"]
    # Cosegmentation loss, 10 labeled: 44.1 25.5 12.8 25.6 -> 27.0 (with "other" it
    # would not be).
    iou2 = dict(iou, head=0.441, body=0.255, hand=0.128, leg=0.256)
    assert evaluation.format_table_row(iou2, "all4").split()[-1] == "27.0"
    assert evaluation.table_values(iou2, "all4")[-1] == pytest.approx(27.0)


def test_table1_pair_and_markdown():
    iou = {"background": 0.95, "head": 0.437, "other": 0.672}
    assert evaluation.table_columns("head") == ["head", "others"]
    assert evaluation.format_table_header("head").split() == ["head", "others"]
    assert evaluation.format_table_row(iou, "head").split() == ["43.7", "67.2"]
    assert (evaluation.format_table_row(iou, "head", label="(a)", label_width=6).split()
            == ["(a)", "43.7", "67.2"])
    # Table 1, row (a), from four per-part models.
    paper_a = {"head": (0.437, 0.672), "body": (0.138, 0.502), "hand": (0.025, 0.604),
               "leg": (0.150, 0.627)}
    models = {p: {"background": 0.9, p: v[0], "other": v[1]} for p, v in paper_a.items()}
    table = evaluation.markdown_table1([("(a)", models), ("(b)", {"head": models["head"]})])
    lines = table.splitlines()
    assert lines[0] == ("| Method | head | head others | body | body others | hand | "
                        "hand others | leg | leg others |")
    assert lines[2] == "| (a) | 43.7 | 67.2 | 13.8 | 50.2 | 2.5 | 60.4 | 15.0 | 62.7 |"
    assert lines[3] == "| (b) | 43.7 | 67.2 | - | - | - | - | - | - |"


def test_person_part6_row_and_markdown_table_with_absent_class():
    names = schema.get_scheme("person_part6").class_names
    iou = {n: 0.1 * i for i, n in enumerate(names)}
    iou["lower_legs"] = None  # absent: "-", out of the mean
    assert evaluation.table_columns("person_part6") == [
        "head", "torso", "upper_arms", "lower_arms", "upper_legs", "lower_legs", "mean"]
    row = evaluation.format_table_row(iou, "person_part6").split()
    assert row == ["10.0", "20.0", "30.0", "40.0", "50.0", "-", "30.0"]
    md = evaluation.markdown_table([("(a)", {"iou": iou})], "person_part6").splitlines()
    assert md[0] == ("| Method | head | torso | upper_arms | lower_arms | upper_legs | "
                     "lower_legs | mean |")
    assert md[1] == "|---|---:|---:|---:|---:|---:|---:|---:|"
    assert md[2] == "| (a) | 10.0 | 20.0 | 30.0 | 40.0 | 50.0 | - | 30.0 |"


# === Upsampling alignment ===

def test_upsampling_puts_cell_k_on_pixel_8k():
    # A logits map linear in the cell position: bilinear interpolation must give back
    # the linear function of (y / 8, x / 8), constant past the last cell.
    h, w, height, width = 3, 2, 20, 9
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    logits = np.stack([10.0 * r + c, -r], axis=-1)[None].astype(np.float32)
    out = evaluation.upsample_logits(logits, (height, width)).numpy()
    assert out.shape == (1, height, width, 2)
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    expected = 10.0 * np.minimum(y / 8, h - 1) + np.minimum(x / 8, w - 1)
    np.testing.assert_allclose(out[0, ..., 0], expected, atol=1e-5)
    np.testing.assert_allclose(out[0, 8::8, 8::8, 0], logits[0, 1:, 1:, 0])  # on the cells


@pytest.mark.parametrize("height,width", [(17, 25), (16, 21), (41, 3), (8, 8)])
def test_upsampling_matches_align_corners_reference(height, width):
    rng = np.random.RandomState(height)
    h, w = -(-height // 8), -(-width // 8)
    logits = rng.randn(2, h, w, 3).astype(np.float32)
    up = tf.function(evaluation.upsample_logits, reduce_retracing=True)
    out = up(logits, tf.constant([height, width])).numpy()
    np.testing.assert_allclose(out, reference_upsample(logits, (height, width)), atol=1e-5)


# === Test-time augmentation ===

def _strided_model(num_classes=3, seed=0):
    """A flip-symmetric predict_fn: per-cell linear map of the pixels at (8r, 8c)."""
    weights = np.random.RandomState(seed).randn(4, num_classes).astype(np.float32) * 0.05

    def predict(image, region):
        cells = tf.concat([image, region], axis=-1)[:, ::8, ::8, :]
        logits = tf.einsum("bhwk,kc->bhwc", cells, weights)
        return tf.nn.softmax(evaluation.upsample_logits(logits, tf.shape(image)[1:3]))

    return predict


def test_flip_on_a_symmetric_model_changes_nothing():
    # Width 8n + 1: mirroring maps the stride-8 grid onto itself.
    rng = np.random.RandomState(0)
    image = rng.uniform(0, 255, (1, 17, 25, 3)).astype(np.float32)
    region = (rng.rand(1, 17, 25, 1) < 0.5).astype(np.float32)
    predict = _strided_model()
    plain = evaluation.predict_probabilities(predict, image, region).numpy()
    flipped = evaluation.predict_probabilities(predict, image, region, flip=True).numpy()
    np.testing.assert_allclose(flipped, plain, atol=1e-6)


def test_flip_mirrors_the_probabilities_back():
    # p(class 1) grows with the column: mirrored back, the two views average to 1/2.
    def predict(image, region):
        width = tf.shape(image)[2]
        x = tf.cast(tf.range(width), tf.float32) / tf.cast(width - 1, tf.float32)
        p1 = tf.broadcast_to(x[None, None, :, None], tf.shape(image[..., :1]))
        return tf.concat([1.0 - p1, p1], axis=-1)

    image = np.zeros((1, 5, 9, 3), np.float32)
    region = np.ones((1, 5, 9, 1), np.float32)
    plain = evaluation.predict_probabilities(predict, image, region).numpy()
    assert plain[0, 0, -1, 1] == pytest.approx(1.0)
    flipped = evaluation.predict_probabilities(predict, image, region, flip=True).numpy()
    np.testing.assert_allclose(flipped, 0.5, atol=1e-6)


def test_tta_on_a_constant_model_is_exact_and_scales_resize():
    probs = np.array([0.1, 0.6, 0.3], np.float32)
    sizes = []

    def predict(image, region):
        sizes.append(tuple(image.shape[1:3]))
        assert tuple(region.shape[1:3]) == tuple(image.shape[1:3])
        return tf.broadcast_to(probs, tf.concat([tf.shape(image)[:3], [3]], 0))

    image = np.full((1, 20, 28, 3), 100.0, np.float32)
    region = np.ones((1, 20, 28, 1), np.float32)
    out = evaluation.predict_probabilities(predict, image, region, flip=True,
                                           scales=(0.75, 1.0, 1.25)).numpy()
    assert out.shape == (1, 20, 28, 3)
    np.testing.assert_allclose(out, np.broadcast_to(probs, out.shape), atol=1e-6)
    assert sorted(set(sizes)) == [(15, 21), (20, 28), (25, 35)]
    assert len(sizes) == 6  # 3 scales x (plain, mirrored)


def test_evaluator_accumulates_over_images_of_different_sizes():
    predict = _strided_model(num_classes=3, seed=3)
    ev = evaluation.Evaluator(predict, num_classes=3, flip=True)
    rng = np.random.RandomState(2)
    expected = np.zeros((3, 3), np.int64)
    for h, w in ((17, 25), (9, 13), (20, 11), (12, 30)):
        image = rng.uniform(0, 255, (1, h, w, 3)).astype(np.float32)
        region = np.ones((1, h, w, 1), np.float32)
        labels = rng.randint(0, 3, (1, h, w)).astype(np.int32)
        prediction = ev.update({"image": image, "human_region": region, "labels": labels})
        probs = evaluation.predict_probabilities(predict, image, region, flip=True).numpy()
        np.testing.assert_array_equal(prediction, probs[0].argmax(-1))
        expected += numpy_confusion(labels[0], probs[0].argmax(-1), 3)
    np.testing.assert_array_equal(ev.confusion, expected)
    assert ev.num_images == 4
    # Four sizes, one trace.
    assert ev._step.experimental_get_tracing_count() == 1


# === evaluate() end to end ===

def write_eval_records_dir(root):
    os.makedirs(root / "data", exist_ok=True)
    return write_eval_records(root / "data")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(model_dir, eval pattern, network): an all4 run directory and 3 whole images."""
    root = tmp_path_factory.mktemp("eval_run")
    data = write_eval_records_dir(root)
    model_dir = str(root / "run")
    network = make_run_dir(model_dir, "all4")
    return model_dir, data, network


def _expected_confusion(network, pattern, scheme="all4", max_images=None):
    """Confusion matrix computed apart from evaluation.py's Evaluator."""
    num_classes = schema.get_scheme(scheme).num_classes
    cm = np.zeros((num_classes, num_classes), np.int64)
    ds = streams.eval_dataset(pattern, scheme=scheme)
    for i, element in enumerate(ds):
        if max_images is not None and i >= max_images:
            break
        logits = network({"image": element["image"],
                          "human_region": element["human_region"]})["logits"].numpy()
        labels = element["labels"].numpy()[0]
        up = reference_upsample(logits, labels.shape)
        cm += numpy_confusion(labels, up[0].argmax(-1), num_classes)
    return cm


def test_evaluate_run_directory_end_to_end(tiny_run, tmp_path, capsys):
    model_dir, data, network = tiny_run
    config = evaluation.EvalConfig(eval_data=data, model_dir=model_dir, overlays=2)
    metrics = evaluation.evaluate(config)

    expected = _expected_confusion(network, data)
    np.testing.assert_array_equal(metrics["confusion_matrix"], expected)
    assert expected.sum() > 0 and (np.count_nonzero(expected.sum(axis=0)) > 1), \
        "the tiny network should predict more than one class"
    assert metrics["num_images"] == 3
    assert metrics["parts"] == "all4"
    assert metrics["class_names"] == ALL4
    assert metrics["checkpoint"] == os.path.join(model_dir, "checkpoints", "last.weights.h5")
    assert metrics["eval_data"] == data
    assert metrics["images_per_second"] > 0
    assert metrics["config"]["overlays"] == 2 and metrics["config"]["model_dir"] == model_dir
    iou = evaluation.iou_from_confusion(expected)
    for name, value in zip(ALL4, iou):
        if np.isnan(value):
            assert metrics["iou"][name] is None
        else:
            assert metrics["iou"][name] == pytest.approx(value)

    # Default output directory MODEL_DIR/eval_<split>, metrics.json = the return value.
    out_dir = os.path.join(model_dir, "eval_val")
    assert metrics["output_dir"] == out_dir
    with open(os.path.join(out_dir, "metrics.json")) as f:
        assert json.load(f) == json.loads(json.dumps(metrics))
    assert not [n for n in os.listdir(out_dir) if n.endswith(".tmp")]

    # Overlays: the first two images, in file order, three panels wide.
    assert [os.path.basename(p) for p in metrics["overlays"]] == ["0000_img0.png",
                                                                  "0001_img1.png"]
    for path in metrics["overlays"]:
        with Image.open(path) as im:
            width, height = im.size
        assert 3 * visualize.MIN_PANEL_PIXELS <= width <= 3 * visualize.MAX_PANEL_PIXELS + 100
        assert visualize.MIN_PANEL_PIXELS * 0.5 < height < width
    assert sorted(os.listdir(os.path.join(out_dir, "overlays"))) == [
        "0000_img0.png", "0001_img1.png"]

    report = evaluation.format_report(metrics)
    assert evaluation.format_table_header("all4") in report
    assert metrics["table_row"] in report


def test_evaluate_max_images_flip_scales_output_dir(tiny_run, tmp_path):
    model_dir, data, network = tiny_run
    config = evaluation.EvalConfig(eval_data=data, model_dir=model_dir, max_images=2,
                                   checkpoint="best", output_dir=str(tmp_path / "out"),
                                   flip=True, scales=(0.75, 1.0), verbose=0)
    metrics = evaluation.evaluate(config)
    assert metrics["num_images"] == 2
    assert metrics["flip"] is True and metrics["scales"] == [0.75, 1.0]
    assert metrics["checkpoint"].endswith("best.weights.h5")
    assert os.path.exists(tmp_path / "out" / "metrics.json")
    labeled = sum(int((e["labels"].numpy() != 255).sum())
                  for e in streams.eval_dataset(data, scheme="all4").take(2))
    assert np.sum(metrics["confusion_matrix"]) == labeled


# === Refusals (library) ===

def test_refusals_name_the_flag(tiny_run, tmp_path):
    model_dir, data, _ = tiny_run

    def refused(match, **kwargs):
        kwargs.setdefault("eval_data", data)
        with pytest.raises(evaluation.ConfigError, match=match):
            evaluation.evaluate(evaluation.EvalConfig(**kwargs))

    refused(r"--parts=head has 3 classes .* has 6 classes", model_dir=model_dir, parts="head")
    refused(r"--model_dir: .*model.json not found", model_dir=str(tmp_path / "nothing"))
    refused(r"--checkpoint=/no/such.weights.h5: .*not found", model_dir=model_dir,
            checkpoint="/no/such.weights.h5")
    refused(r"--eval_data=.*no file matches", model_dir=model_dir,
            eval_data=str(tmp_path / "none-*.tfrecord"))
    other = ph.write_tfrecord(tmp_path / "other.tfrecord", [
        tf.train.Example(features=tf.train.Features(feature={
            "x": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}))
        .SerializeToString()])
    refused(r"--eval_data=.*missing feature keys", model_dir=model_dir, eval_data=other)
    # A foreign shard among good ones is refused before work, naming that shard.
    refused(r"--eval_data=.*other\.tfrecord.*missing feature keys", model_dir=model_dir,
            eval_data=f"{data},{other}")
    refused(r"--eval_data is required", model_dir=model_dir, eval_data="")
    empty = ph.write_tfrecord(tmp_path / "empty.tfrecord", [])
    refused(r"--eval_data=.*holds no record", model_dir=model_dir, eval_data=empty)
    refused(r"exactly one of --model_dir .* and --saved_model", model_dir=model_dir,
            saved_model=str(tmp_path))
    refused(r"exactly one of", model_dir=None)
    refused(r"--scales must be positive", model_dir=model_dir, scales=(1.0, 0.0))
    refused(r"--saved_model=.*neither a SavedModel", saved_model=str(tmp_path))


# === SavedModel (serve_mask) ===

class _TinyServing(tf.Module):
    """A SavedModel with the `serve_mask` signature of coseg_tf/export.py.

    probabilities = softmax over classes of a per-pixel linear map of (image / 255,
    mask); labels = their arg max.
    """

    def __init__(self, weights, bias, class_names_file):
        super().__init__()
        self.weights = tf.Variable(weights)
        self.bias = tf.Variable(bias)
        self.class_names_asset = tf.saved_model.Asset(class_names_file)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, "image"),
                                  tf.TensorSpec([None, None, None], tf.uint8, "human_mask")])
    def serve_mask(self, image, human_mask):
        x = tf.concat([tf.cast(image, tf.float32) / 255.0,
                       tf.cast(human_mask, tf.float32)[..., None]], axis=-1)
        probs = tf.nn.softmax(tf.einsum("bhwk,kc->bhwc", x, self.weights) + self.bias)
        return {"probabilities": probs,
                "labels": tf.argmax(probs, axis=-1, output_type=tf.int32)}


def numpy_serving(weights, bias, image, mask):
    x = np.concatenate([image / 255.0, mask[..., None].astype(np.float64)], axis=-1)
    return (x @ weights + bias).argmax(-1)


def test_evaluate_saved_model_signature(tmp_path):
    data = write_eval_records_dir(tmp_path)
    names = ALL4
    rng = np.random.RandomState(5)
    weights = rng.randn(4, len(names)).astype(np.float32) * 3
    bias = rng.randn(len(names)).astype(np.float32)
    names_file = tmp_path / "class_names.txt"
    names_file.write_text("".join(n + "\n" for n in names))
    module = _TinyServing(weights, bias, str(names_file))
    export_dir = tmp_path / "export"
    tf.saved_model.save(module, str(export_dir / "3"),
                        signatures={"serve_mask": module.serve_mask})

    metrics = evaluation.evaluate(evaluation.EvalConfig(
        eval_data=data, saved_model=str(export_dir), verbose=0, overlays=1))
    assert metrics["parts"] == "all4"  # from assets/class_names.txt
    assert metrics["saved_model"] == str(export_dir / "3")
    assert metrics["output_dir"] == str(export_dir / "eval_val")
    expected = np.zeros((6, 6), np.int64)
    for e in streams.eval_dataset(data, scheme="all4"):
        pred = numpy_serving(weights.astype(np.float64), bias.astype(np.float64),
                             e["image"].numpy()[0], e["human_region"].numpy()[0, ..., 0] > 0.5)
        expected += numpy_confusion(e["labels"].numpy()[0], pred, 6)
    np.testing.assert_array_equal(metrics["confusion_matrix"], expected)
    assert len(metrics["overlays"]) == 1 and os.path.exists(metrics["overlays"][0])

    with pytest.raises(evaluation.ConfigError, match=r"--parts=leg has 3 classes .*6 classes"):
        evaluation.evaluate(evaluation.EvalConfig(eval_data=data, parts="leg",
                                                  saved_model=str(export_dir / "3")))


@pytest.mark.slow
def test_saved_model_of_the_real_exporter_matches_the_checkpoint(tiny_run, tmp_path):
    export = pytest.importorskip("coseg_tf.export",
                                 reason="coseg_tf/export.py is not written yet")
    model_dir, data, _ = tiny_run
    export_dir = str(tmp_path / "export")
    result = export.run_export(export.ExportConfig(model_dir=model_dir,
                                                   export_dir=export_dir))
    from_checkpoint = evaluation.evaluate(evaluation.EvalConfig(
        eval_data=data, model_dir=model_dir, output_dir=str(tmp_path / "a"), verbose=0))
    from_export = evaluation.evaluate(evaluation.EvalConfig(
        eval_data=data, saved_model=export_dir, output_dir=str(tmp_path / "b"), verbose=0))
    assert from_export["parts"] == "all4"
    assert from_export["saved_model"] == result.path
    cm_a = np.asarray(from_checkpoint["confusion_matrix"])
    cm_b = np.asarray(from_export["confusion_matrix"])
    # The same network: at most a few pixels may flip at near-ties.
    assert np.abs(cm_a - cm_b).sum() <= 0.002 * cm_a.sum()


# === Pictures ===

def test_colorize_palette_and_compare_overlays(tmp_path):
    labels = np.array([[0, 1, 5], [255, 2, 4]])
    pic = visualize.colorize(labels, ALL4)
    assert tuple(pic[0, 0]) == visualize.BACKGROUND_COLOR
    assert tuple(pic[0, 2]) == visualize.OTHER_COLOR
    assert tuple(pic[1, 0]) == visualize.IGNORE_COLOR
    assert tuple(pic[0, 1]) == visualize.PALETTE["head"]
    # The same name has the same colour in another scheme.
    assert tuple(visualize.colorize(np.array([[1]]), ["background", "head", "other"])[0, 0]) \
        == visualize.PALETTE["head"]
    with pytest.raises(ValueError, match="not class ids"):
        visualize.colorize(np.array([[7]]), ALL4)

    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (40, 60, 3)).astype(np.uint8)
    gt = rng.randint(0, 6, (40, 60))
    preds = {name: rng.randint(0, 6, (40, 60)) for name in ("(a)", "(b)", "(c)")}
    path = visualize.compare_overlays(image, gt, preds, ALL4, str(tmp_path / "cmp.png"))
    with Image.open(path) as im:
        width, height = im.size
    assert 5 * visualize.MIN_PANEL_PIXELS <= width <= 5 * visualize.MAX_PANEL_PIXELS + 100
    assert height < width
    with pytest.raises(ValueError, match="the image is"):
        visualize.compare_overlays(image, gt[:10], preds, ALL4, str(tmp_path / "x.png"))


# === Schemes as data: a JSON scheme recorded in model.json ===

def test_a_json_scheme_travels_in_model_json_to_eval(tmp_path):
    from pipelines import records

    lip = schema.Vocabulary(["Hat", "Face", "Upper-clothes", "Left-arm", "Pants"], name="lip")
    lip3 = schema.scheme_from_json({"name": "lip3", "classes": [
        {"name": "head", "parts": ["Hat", "Face"]},
        {"name": "body", "parts": ["Upper-clothes", "Pants"]},
        {"name": "arms", "parts": ["Left-arm"]}]}).bind(lip)
    arrays = ph.synthetic_arrays("lip_0", height=10, width=12)
    lip_file = ph.write_tfrecord(tmp_path / "lip.tfrecord", [records.make_example(
        jpeg=ph.jpeg_bytes(arrays["image"]), image_id="lip_0", height=10, width=12,
        boxes=arrays["boxes"], person_mask=arrays["person_mask"],
        parts_fine=np.minimum(arrays["parts_fine"], 5), vocabulary=lip)])
    pascal_file = ph.write_tfrecord(tmp_path / "pp.tfrecord", [ph.serialize(arrays)])
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.weights.h5").write_bytes(b"")
    (run / "model.json").write_text(json.dumps({
        "parts": "lip3", "num_classes": 4, "class_names": list(lip3.class_names),
        "scheme": lip3.to_json(), "vocabulary": lip.to_json(), "width_multiplier": 0.0625}))
    resolved = evaluation.validate(evaluation.EvalConfig(eval_data=lip_file,
                                                         model_dir=str(run)))
    assert resolved.scheme.same_merge(lip3) and resolved.scheme.vocabulary == lip
    assert evaluation.table_columns(resolved.scheme) == ["head", "body", "arms", "mean"]
    with pytest.raises(evaluation.ConfigError, match="does not fit") as err:
        evaluation.validate(evaluation.EvalConfig(eval_data=pascal_file, model_dir=str(run)))
    assert "'Hat', 'Face'" in str(err.value)
    metrics = {"parts": "lip3", "class_names": list(lip3.class_names),
               "iou": {"background": 0.9, "head": 0.5, "body": 0.25, "arms": None}}
    assert evaluation.table_values(metrics, "lip3") == [50.0, 25.0, None, 37.5]
