"""Tests of coseg_tf/export.py and export.py: the SavedModel that TF Serving loads.

The loaded SavedModel is compared with the in-memory network (through an independent
reference: pipelines.merge.human_region per image, scipy's bilinear interpolation on the
network's grid, a numpy softmax) on two image sizes through both signatures; requests in
TF Serving's REST forms are decoded as TF Serving decodes them; bad inputs are refused
with errors naming the input; the version directory is written atomically; the CLI runs
on a tiny run directory.

The TF Serving binary itself (tensorflow_model_server) cannot be installed here (it is
neither on PyPI nor in Debian), so no test starts a server.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from coseg_tf import grid
from coseg_tf import export as export_lib
from coseg_tf import model as model_lib
from coseg_tf import trainer as trainer_lib
from pipelines import merge, schema

REPO = pathlib.Path(__file__).resolve().parents[1]
SCHEME = schema.get_scheme("all4")
NUM_CLASSES = SCHEME.num_classes
INFO = {"architecture": "deeplab_largefov", "parts": SCHEME.name,
        "class_names": list(SCHEME.class_names), "num_classes": NUM_CLASSES,
        "width_multiplier": 0.0625, "human_region": "boxes"}
SIZES = [(65, 49), (97, 97)]


def _tiny_network(seed=0):
    """The real DeepLab-LargeFOV at width 0.0625, random init, with a livelier fc8.

    fc8's initial std (0.01) gives logits within 0.01 of each other: near ties
    everywhere. Larger random fc8 weights and biases make the labels differ from pixel
    to pixel, so the label comparisons test something.
    """
    keras.utils.set_random_seed(seed)
    network = model_lib.build_deeplab_largefov(num_classes=NUM_CLASSES,
                                               width_multiplier=0.0625)
    fc8 = network.get_layer("fc8")
    rng = np.random.default_rng(seed)
    kernel, bias = fc8.get_weights()
    fc8.set_weights([rng.normal(0.0, 2.0, kernel.shape).astype(np.float32),
                     rng.normal(0.0, 0.5, bias.shape).astype(np.float32)])
    return network


def _fast_network(num_classes=NUM_CLASSES):
    """A network with the same interface as DeepLab-LargeFOV that traces in a moment,
    for the tests of the version directories (not of the numbers)."""
    image = keras.Input((None, None, 3), name="image")
    region = keras.Input((None, None, 1), name="human_region")
    x = keras.layers.Concatenate()([image, region])
    x = keras.layers.MaxPooling2D(8, strides=8, padding="same")(x)
    logits = keras.layers.Conv2D(num_classes, 1, name="fc8")(x)
    return keras.Model({"image": image, "human_region": region}, {"logits": logits})


def _image(rng, batch, height, width):
    return rng.integers(0, 256, [batch, height, width, 3]).astype(np.uint8)


def _boxes(height, width):
    """[2, 3, 4]: image 0 has two boxes (one on exact pixel edges) and a padding row;
    image 1 one box and two padding rows."""
    return np.array([
        [[0.1, 0.15, 0.7, 0.6], [12 / height, 20 / width, 30 / height, 1.0], [0, 0, 0, 0]],
        [[0.3, 0.0, 1.0, 0.55], [0, 0, 0, 0], [0, 0, 0, 0]],
    ], np.float32)


def _mask(rng, batch, height, width):
    """uint8 [B, H, W]: a blob of instance ids 1, 2 (nonzero = human) and some noise."""
    mask = np.zeros([batch, height, width], np.uint8)
    mask[:, height // 4: 3 * height // 4, width // 5: 4 * width // 5] = 1
    mask[:, : height // 3, : width // 3] = 2
    mask[rng.random([batch, height, width]) < 0.05] = 7
    return mask


def _reference(network, image, region):
    """(probabilities, labels, top-2 margin) of the in-memory network, computed apart
    from export.py: logits upsampled with scipy (pixel y reads cell y / 8, edge
    clamped), numpy softmax."""
    logits = network({"image": tf.constant(image, tf.float32),
                      "human_region": tf.constant(region, tf.float32)},
                     training=False)["logits"].numpy()
    batch, height, width = image.shape[:3]
    rows, cols = np.meshgrid(np.arange(height) / 8.0, np.arange(width) / 8.0,
                             indexing="ij")
    up = np.stack([np.stack([ndimage.map_coordinates(logits[b, :, :, c], [rows, cols],
                                                     order=1, mode="nearest")
                             for c in range(logits.shape[-1])], axis=-1)
                   for b in range(batch)])
    up = up.astype(np.float64)
    e = np.exp(up - up.max(axis=-1, keepdims=True))
    probs = e / e.sum(axis=-1, keepdims=True)
    top2 = np.sort(up, axis=-1)[..., -2:]
    return probs, up.argmax(axis=-1), top2[..., 1] - top2[..., 0]


def _region_from_boxes(boxes, height, width):
    return np.stack([merge.human_region(b, None, height, width, mode="boxes").numpy()
                     for b in boxes])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(in-memory network, loaded SavedModel, its path), exported once for the module."""
    network = _tiny_network()
    export_dir = tmp_path_factory.mktemp("export")
    path = export_lib.export_saved_model(network, INFO, str(export_dir))
    return network, tf.saved_model.load(path), path


# === Graph pieces ===

@pytest.mark.parametrize("height,width", [(65, 49), (7, 9), (40, 32)])
def test_human_region_from_boxes_equals_the_training_pipeline(height, width):
    rng = np.random.default_rng(height)
    boxes = rng.random([3, 5, 4]).astype(np.float32)
    boxes[..., 0:2], boxes[..., 2:4] = (np.minimum(boxes[..., 0:2], boxes[..., 2:4]),
                                        np.maximum(boxes[..., 0:2], boxes[..., 2:4]))
    boxes[0, 0] = [1 / height, 2 / width, 5 / height, 7 / width]  # exact pixel edges
    boxes[1, 1] = [0.5, 0.5, 0.5, 0.9]                            # degenerate
    boxes[1, 2:] = 0.0                                            # padding rows
    boxes[2] = 0.0                                                # no human at all
    got = export_lib.human_region_from_boxes(tf.constant(boxes), height, width).numpy()
    want = _region_from_boxes(boxes, height, width)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (3, height, width, 1)
    assert got[0].sum() > 0 and got[2].sum() == 0
    # The exact-edge box covers rows 1..4 and columns 2..6, as the convention says.
    only_edge_box = export_lib.human_region_from_boxes(boxes[:1, :1], height, width)
    np.testing.assert_array_equal(np.argwhere(only_edge_box.numpy()[0, :, :, 0]).min(0), [1, 2])
    np.testing.assert_array_equal(np.argwhere(only_edge_box.numpy()[0, :, :, 0]).max(0), [4, 6])


@pytest.mark.parametrize("height,width", [(65, 49), (64, 57), (8, 1)])
def test_upsampling_is_bilinear_on_the_network_grid(height, width):
    h, w = -(-height // 8), -(-width // 8)
    logits = np.random.default_rng(1).normal(size=[2, h, w, 3]).astype(np.float32)
    got = grid.upsample_logits(tf.constant(logits), (height, width)).numpy()
    assert got.shape == (2, height, width, 3)
    # Cell (r, c) sits on pixel (8r, 8c).
    np.testing.assert_allclose(got[:, ::8, ::8], logits, rtol=0, atol=1e-6)
    rows, cols = np.meshgrid(np.arange(height) / 8.0, np.arange(width) / 8.0, indexing="ij")
    want = np.stack([np.stack([ndimage.map_coordinates(logits[b, :, :, c], [rows, cols],
                                                       order=1, mode="nearest")
                               for c in range(3)], -1) for b in range(2)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


# === The SavedModel against the in-memory network ===

@pytest.mark.parametrize("height,width", SIZES)
def test_serving_default_matches_the_in_memory_network(exported, height, width):
    network, loaded, _ = exported
    image = _image(np.random.default_rng(height), 2, height, width)
    boxes = _boxes(height, width)
    out = loaded.signatures["serving_default"](image=tf.constant(image),
                                               human_boxes=tf.constant(boxes))
    probs, labels, margin = _reference(network, image, _region_from_boxes(boxes, height,
                                                                          width))
    assert out["probabilities"].dtype == tf.float32 and out["labels"].dtype == tf.int32
    assert out["probabilities"].shape == (2, height, width, NUM_CLASSES)
    assert out["labels"].shape == (2, height, width)
    np.testing.assert_allclose(out["probabilities"].numpy(), probs, rtol=0, atol=2e-5)
    clear = margin > 1e-3
    assert clear.mean() > 0.9, "near ties everywhere: the label check would test nothing"
    assert len(np.unique(labels[clear])) >= 3
    np.testing.assert_array_equal(out["labels"].numpy()[clear], labels[clear])


@pytest.mark.parametrize("height,width", SIZES)
def test_serve_mask_matches_the_in_memory_network(exported, height, width):
    network, loaded, _ = exported
    rng = np.random.default_rng(width + 1)
    image = _image(rng, 2, height, width)
    mask = _mask(rng, 2, height, width)
    out = loaded.signatures["serve_mask"](image=tf.constant(image),
                                          human_mask=tf.constant(mask))
    region = (mask > 0).astype(np.float32)[..., None]
    probs, labels, margin = _reference(network, image, region)
    np.testing.assert_allclose(out["probabilities"].numpy(), probs, rtol=0, atol=2e-5)
    clear = margin > 1e-3
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(out["labels"].numpy()[clear], labels[clear])


def test_boxes_and_the_equivalent_mask_agree(exported):
    _, loaded, _ = exported
    image = _image(np.random.default_rng(5), 2, 65, 49)
    boxes = _boxes(65, 49)
    mask = _region_from_boxes(boxes, 65, 49)[..., 0].astype(np.uint8)
    a = loaded.signatures["serving_default"](image=image, human_boxes=boxes)
    b = loaded.signatures["serve_mask"](image=image, human_mask=mask)
    np.testing.assert_allclose(a["probabilities"], b["probabilities"], rtol=0, atol=1e-6)


def test_no_human_region_gives_finite_outputs(exported):
    network, loaded, _ = exported
    image = _image(np.random.default_rng(3), 2, 33, 41)
    for boxes in (np.zeros([2, 3, 4], np.float32), np.zeros([2, 0, 4], np.float32)):
        out = loaded.signatures["serving_default"](image=image, human_boxes=boxes)
        probs = out["probabilities"].numpy()
        assert np.isfinite(probs).all()
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
        # Masked features are zero: fc8's bias is the logit of every pixel.
        bias = network.get_layer("fc8").get_weights()[1]
        want = np.exp(bias - bias.max()) / np.exp(bias - bias.max()).sum()
        np.testing.assert_allclose(probs, np.broadcast_to(want, probs.shape), atol=1e-6)
        assert (out["labels"].numpy() == bias.argmax()).all()
    out = loaded.signatures["serve_mask"](image=image, human_mask=np.zeros([2, 33, 41],
                                                                         np.uint8))
    assert np.isfinite(out["probabilities"].numpy()).all()


def test_class_names_asset(exported):
    _, loaded, path = exported
    asset = loaded.class_names_file.asset_path.numpy().decode()
    assert asset == os.path.join(path, "assets", "class_names.txt")
    with open(asset) as f:
        assert f.read().splitlines() == list(SCHEME.class_names)
    with open(os.path.join(path, "assets", "model.json")) as f:
        assert json.load(f) == INFO


def test_saved_model_cli_lists_both_signatures(exported):
    _, _, path = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    blocks = {}
    for block in text.split("signature_def[")[1:]:
        name = block.split("]", 1)[0].strip("'")
        blocks[name] = block
    assert {"serving_default", "serve_mask"} <= set(blocks)

    def tensor(block, kind, name):
        part = block.split(f"{kind}['{name}'] tensor_info:", 1)[1]
        lines = [line.strip() for line in part.splitlines()[1:3]]
        return lines[0].removeprefix("dtype: "), lines[1].removeprefix("shape: ")

    for key, region_input in (("serving_default", ("human_boxes", "DT_FLOAT", "(-1, -1, 4)")),
                              ("serve_mask", ("human_mask", "DT_UINT8", "(-1, -1, -1)"))):
        block = blocks[key]
        assert tensor(block, "inputs", "image") == ("DT_UINT8", "(-1, -1, -1, 3)")
        assert tensor(block, "inputs", region_input[0]) == region_input[1:]
        assert tensor(block, "outputs", "labels") == ("DT_INT32", "(-1, -1, -1)")
        assert tensor(block, "outputs", "probabilities") == (
            "DT_FLOAT", f"(-1, -1, -1, {NUM_CLASSES})")
        assert "Method name is: tensorflow/serving/predict" in block


# === TF Serving's REST request forms ===

def test_rest_requests_decode_to_the_direct_call(exported):
    _, loaded, _ = exported
    rng = np.random.default_rng(11)
    image = _image(rng, 2, 33, 41)
    boxes = _boxes(33, 41)
    direct = loaded.signatures["serving_default"](image=image, human_boxes=boxes)

    row = json.dumps({"signature_name": "serving_default", "instances": [
        {"image": image[i].tolist(), "human_boxes": boxes[i].tolist()} for i in range(2)]})
    columnar = json.dumps({"inputs": {"image": image.tolist(),
                                      "human_boxes": boxes.tolist()}})
    for body in (row, columnar):
        inputs = export_lib.decode_rest_request(body, loaded.signatures)
        assert inputs["image"].dtype == np.uint8 and inputs["human_boxes"].dtype == np.float32
        np.testing.assert_array_equal(inputs["image"], image)
        out = loaded.signatures["serving_default"](
            **{k: tf.constant(v) for k, v in inputs.items()})
        np.testing.assert_array_equal(out["labels"], direct["labels"])
        np.testing.assert_allclose(out["probabilities"], direct["probabilities"], atol=1e-7)

    mask = _mask(rng, 2, 33, 41)
    body = {"signature_name": "serve_mask",
            "instances": [{"image": image[i].tolist(), "human_mask": mask[i].tolist()}
                          for i in range(2)]}
    inputs = export_lib.decode_rest_request(body, loaded.signatures)
    assert set(inputs) == {"image", "human_mask"} and inputs["human_mask"].dtype == np.uint8
    out = loaded.signatures["serve_mask"](**inputs)
    want = loaded.signatures["serve_mask"](image=image, human_mask=mask)
    np.testing.assert_array_equal(out["labels"], want["labels"])


def test_rest_decoding_refuses_what_tf_serving_refuses(exported):
    _, loaded, _ = exported
    sig = loaded.signatures["serving_default"]
    image = np.zeros([4, 5, 3], np.uint8).tolist()
    boxes = [[0.0, 0.0, 1.0, 1.0]]
    cases = [
        ({"instances": [{"image": image}]}, r"missing \['human_boxes'\]"),
        ({"instances": [{"image": image, "human_boxes": boxes, "x": 1}]}, "unexpected"),
        ({"instances": [{"image": image, "human_boxes": boxes},
                        {"image": np.zeros([4, 6, 3]).tolist(), "human_boxes": boxes}]},
         "different shapes"),
        ({"inputs": {"image": [[[[0.5, 1, 2]]]], "human_boxes": [boxes]}}, "integers"),
        ({"inputs": {"image": [[[[256, 1, 2]]]], "human_boxes": [boxes]}}, "range of uint8"),
        ({"instances": [], "inputs": {}}, "exactly one of"),
        ({"signature_name": "nope", "instances": [{}]}, "'nope' not found"),
    ]
    for body, message in cases:
        with pytest.raises(ValueError, match=message):
            export_lib.decode_rest_request(body, loaded.signatures if "signature_name" in body
                                           else sig)


# === Bad requests ===

def test_bad_inputs_are_refused_with_clear_errors(exported):
    """Tensors reach the graph as in TF Serving (no Python-side binding): the graph's
    assertions and the ops' dtypes refuse bad requests, naming the input."""
    _, loaded, _ = exported
    serve = loaded.signatures["serving_default"]
    mask_sig = loaded.signatures["serve_mask"]
    image = np.zeros([1, 16, 16, 3], np.uint8)
    box = np.array([[[0.0, 0.0, 1.0, 1.0]]], np.float32)
    cases = [
        (serve, dict(image=image[0], human_boxes=box),
         r"`image` must be uint8 \[batch, height, width, 3\] \(RGB\); got shape\] \[16 16 3\]"),
        (serve, dict(image=image[None], human_boxes=box),
         r"`image` must be uint8 \[batch, height, width, 3\]"),
        (serve, dict(image=np.zeros([1, 16, 16, 4], np.uint8), human_boxes=box),
         r"`image` must have 3 channels \(RGB\); got shape\] \[1 16 16 4\]"),
        (serve, dict(image=image, human_boxes=box[:, :, :3]),
         r"`human_boxes` must be \[batch, N, 4\] \(ymin, xmin, ymax, xmax\); got shape\] "
         r"\[1 1 3\]"),
        (serve, dict(image=image, human_boxes=box[0]),
         r"`human_boxes` must be float32 \[batch, N, 4\]"),
        (serve, dict(image=image, human_boxes=box + 0.5), r"in \[0, 1\]; got min and max\] "
         r"\[0.5\] \[1.5\]"),
        (serve, dict(image=image, human_boxes=np.full_like(box, np.nan)), r"in \[0, 1\]"),
        (serve, dict(image=image, human_boxes=np.concatenate([box, box])), "same batch size"),
        (mask_sig, dict(image=image, human_mask=np.zeros([1, 16, 15], np.uint8)),
         r"`human_mask` must be \[batch, height, width\] of `image`"),
        (mask_sig, dict(image=image, human_mask=np.zeros([1, 16, 16, 1], np.uint8)),
         r"`human_mask` must be uint8 \[batch, height, width\]"),
        (mask_sig, dict(image=image[0], human_mask=np.zeros([1, 16, 16], np.uint8)),
         r"serve_mask: `image` must be uint8"),
        # Wrong dtypes: the function's inputs are typed.
        (serve, dict(image=image.astype(np.float32), human_boxes=box),
         "expected to be a uint8 tensor but is a float tensor"),
        (serve, dict(image=image, human_boxes=box.astype(np.float64)),
         "expected to be a float tensor but is a double tensor"),
        (mask_sig, dict(image=image, human_mask=np.zeros([1, 16, 16], np.float32)),
         "expected to be a uint8 tensor but is a float tensor"),
    ]
    for signature, kwargs, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            signature(**{k: tf.constant(v) for k, v in kwargs.items()})
    # NumPy arguments go through TensorFlow's Python binding, which checks shapes against
    # the signature (and converts values to its dtypes).
    with pytest.raises(TypeError, match="name='image'"):
        serve(image=image[0], human_boxes=box)
    # The well-formed request passes, and a box on the border (0 and 1) is valid.
    assert serve(image=tf.constant(image), human_boxes=tf.constant(box))["labels"].shape == (
        1, 16, 16)


@pytest.mark.parametrize("signature", ["serving_default", "serve_mask"])
@pytest.mark.parametrize("height,width", [(0, 0), (0, 7), (7, 0)])
def test_an_empty_image_is_refused_by_the_signature_check(exported, signature, height,
                                                          width):
    """Issue 15 case 8: an image of no pixels fails at the signature's own input check
    (without it: an empty map, or with oneDNN "input depth must be evenly divisible"
    deep inside the network)."""
    _, loaded, _ = exported
    kwargs = {"image": tf.zeros([1, height, width, 3], tf.uint8)}
    if signature == "serving_default":
        kwargs["human_boxes"] = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])
    else:
        kwargs["human_mask"] = tf.ones([1, height, width], tf.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"{signature}: `image` must be at least 1 x 1 pixels "
                             rf"\(height and width >= 1\); got shape\] \[1 {height} {width} 3\]"):
        loaded.signatures[signature](**kwargs)


@pytest.mark.parametrize("height,width", [(1, 1), (1, 6), (6, 1), (2, 3)])
def test_the_smallest_images_the_check_passes_work(exported, height, width):
    """Whatever the input check lets through, the network answers (finite, one class
    per pixel): the check and the network agree on the smallest images."""
    _, loaded, _ = exported
    out = loaded.signatures["serving_default"](
        image=tf.fill([1, height, width, 3], tf.constant(128, tf.uint8)),
        human_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]))
    assert out["labels"].shape == (1, height, width)
    probs = out["probabilities"].numpy()
    assert probs.shape == (1, height, width, NUM_CLASSES) and np.isfinite(probs).all()


def test_the_in_memory_module_refuses_wrong_dtypes_at_the_call():
    server = export_lib.SegmentationServer(_fast_network(), os.devnull)
    with pytest.raises((TypeError, ValueError)):
        server.serve_boxes(tf.zeros([1, 8, 8, 3], tf.float32), tf.zeros([1, 1, 4]))


# === Versions and the atomic write ===

def _listing(path):
    return sorted(os.listdir(path))


def test_versions_are_numbered_and_never_overwritten_by_default(tmp_path):
    network = _fast_network()
    export_dir = str(tmp_path / "model")
    first = export_lib.export_saved_model(network, INFO, export_dir)
    second = export_lib.export_saved_model(network, INFO, export_dir)
    assert (first, second) == (os.path.join(export_dir, "1"), os.path.join(export_dir, "2"))
    seventh = export_lib.export_saved_model(network, INFO, export_dir, version=7)
    assert seventh.endswith("7") and export_lib.next_version(export_dir) == 8
    assert _listing(export_dir) == ["1", "2", "7"]  # no temporary directory left

    marker = tmp_path / "model" / "2" / "marker"
    marker.write_text("old")
    with pytest.raises(export_lib.ConfigError, match="already exists.*--overwrite"):
        export_lib.export_saved_model(network, INFO, export_dir, version=2)
    assert marker.exists() and _listing(export_dir) == ["1", "2", "7"]

    export_lib.export_saved_model(network, INFO, export_dir, version=2, overwrite=True)
    assert not marker.exists()
    assert os.path.exists(os.path.join(export_dir, "2", "saved_model.pb"))
    assert _listing(export_dir) == ["1", "2", "7"]

    with pytest.raises(export_lib.ConfigError, match="--version"):
        export_lib.export_saved_model(network, INFO, export_dir, version=-1)
    with pytest.raises(export_lib.ConfigError, match="6 classes"):
        export_lib.export_saved_model(_fast_network(3), INFO, export_dir)


def test_a_half_written_export_never_looks_like_a_version(tmp_path, monkeypatch):
    network = _fast_network()
    export_dir = str(tmp_path / "model")
    export_lib.export_saved_model(network, INFO, export_dir)
    real_save = tf.saved_model.save
    seen = {}

    def save_then_crash(obj, path, signatures=None):
        real_save(obj, path, signatures=signatures)
        seen["path"] = path
        seen["listing"] = _listing(export_dir)
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", save_then_crash)
    with pytest.raises(OSError, match="disk full"):
        export_lib.export_saved_model(network, INFO, export_dir)
    # While being written the export sat in a hidden, non-integer sibling directory.
    name = os.path.basename(seen["path"])
    assert os.path.dirname(seen["path"]) == export_dir
    assert name.startswith(".") and not name.isdigit() and name in seen["listing"]
    assert export_lib.existing_versions(export_dir) == [1]
    assert _listing(export_dir) == ["1"]  # and it is cleaned up after the failure


# === The printed commands ===

@pytest.mark.parametrize("name", ["my exports", "it's $HOME; `x`", "tab\there"])
def test_printed_commands_keep_an_export_path_as_one_argument(tmp_path, name):
    """Issue 15 case 7: the commands export.py prints split (as a POSIX shell splits
    them) into the intended arguments, whatever the export path holds."""
    import shlex

    path = str(tmp_path / name / "models" / "3")
    base = os.path.dirname(path)
    model = export_lib._model_name(base)
    show, server, docker, curl = export_lib.serving_commands(path)
    assert shlex.split(show)[1:] == ["show", "--dir", path, "--all"]
    assert shlex.split(server) == ["tensorflow_model_server", "--rest_api_port=8501",
                                   f"--model_name={model}", f"--model_base_path={base}"]
    assert shlex.split(docker) == ["docker", "run", "--rm", "-p", "8501:8501", "-v",
                                   f"{base}:/models/{model}", "-e", f"MODEL_NAME={model}",
                                   "tensorflow/serving"]
    request = json.loads(shlex.split(curl)[-1].replace("...", "0").replace(
        "R, G, B", "0, 0, 0").replace("ymin, xmin, ymax, xmax", "0, 0, 1, 1"))
    assert request["signature_name"] == "serving_default"
    described = export_lib.describe_export(export_lib.ExportResult(path, 3, 10))
    for command in (show, server, docker, curl):
        assert command in described


def test_the_printed_inspect_command_runs_on_a_path_with_spaces(tmp_path):
    export_dir = tmp_path / "my exports" / "it's"
    path = export_lib.export_saved_model(_fast_network(), INFO, str(export_dir))
    show = export_lib.serving_commands(path)[0]
    result = subprocess.run(["bash", "-c", show], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "signature_def['serving_default']" in result.stdout


# === The command line ===

def _make_run_dir(run_dir, network):
    """A run directory as train_lib.run_training leaves it (model.json, last checkpoint)."""
    trainer = trainer_lib.CosegTrainer(network, num_classes=NUM_CLASSES, objective="supervised")
    trainer.compile(optimizer=keras.optimizers.SGD(momentum=0.9))
    trainer.build()
    trainer.optimizer.build(network.trainable_variables)
    (run_dir / "checkpoints").mkdir(parents=True)
    trainer.save_weights(str(run_dir / "checkpoints" / "last.weights.h5"))
    (run_dir / "model.json").write_text(json.dumps(INFO, indent=2) + "\n")


def _run_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, str(REPO / "export.py"), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)


@pytest.mark.slow
def test_cli_exports_a_run_directory(tmp_path):
    network = _tiny_network(seed=4)
    run_dir = tmp_path / "run"
    _make_run_dir(run_dir, network)
    export_dir = tmp_path / "exports" / "coseg"

    result = _run_cli(f"--model_dir={run_dir}", f"--export_dir={export_dir}")
    assert result.returncode == 0, result.stderr
    path = export_dir / "1"
    out = result.stdout
    assert f"exported version 1: {path}" in out
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert f"({size} bytes)" in out
    assert f"saved_model_cli show --dir {path} --all" in out
    assert (f"tensorflow_model_server --rest_api_port=8501 --model_name=coseg "
            f"--model_base_path={export_dir}") in out
    assert _listing(export_dir) == ["1"]

    loaded = tf.saved_model.load(str(path))
    image = _image(np.random.default_rng(0), 1, 41, 35)
    boxes = np.array([[[0.2, 0.1, 0.9, 0.8]]], np.float32)
    got = loaded.signatures["serving_default"](image=image, human_boxes=boxes)
    probs, _, _ = _reference(network, image, _region_from_boxes(boxes, 41, 35))
    np.testing.assert_allclose(got["probabilities"].numpy(), probs, atol=2e-5)

    again = _run_cli(f"--model_dir={run_dir}", f"--export_dir={export_dir}", "--version=1")
    assert again.returncode == 2
    assert "version 1 already exists" in again.stderr and "--overwrite" in again.stderr

    missing = _run_cli(f"--model_dir={tmp_path / 'nope'}", f"--export_dir={export_dir}")
    assert missing.returncode == 2 and "model.json" in missing.stderr
    bad_checkpoint = _run_cli(f"--model_dir={run_dir}", f"--export_dir={export_dir}",
                              "--checkpoint=best")
    assert bad_checkpoint.returncode == 2 and "best.weights.h5 not found" in bad_checkpoint.stderr
    assert _listing(export_dir) == ["1"]
