"""Tests of pipelines/merge.py: part merging through the lookup table, human region."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

import pipeline_helpers as ph
from pipelines import decode, merge, records, schema

# Held-out annotations and their published all4 maps, beside the checkout.
HOLDOUT = pathlib.Path(__file__).resolve().parents[2] / "shared" / "holdout"


def _decoded_fixture(mat_path, jpeg_path):
    """A real Pascal-Part annotation written with make_example, then decoded."""
    anno = ph.load_pascal_part(mat_path)
    fine = ph.paint_fine(anno["parts"], anno["height"], anno["width"])
    with open(jpeg_path, "rb") as f:
        jpeg = f.read()
    serialized = records.make_example(
        jpeg=jpeg, image_id=pathlib.Path(mat_path).stem, height=anno["height"],
        width=anno["width"], boxes=ph.tight_boxes(anno["person_mask"]),
        person_mask=anno["person_mask"], parts_fine=fine)
    return anno, decode.decode_example(serialized)


# 2008_000726: two persons (3 and 13 overlapping parts, no legs); 2010_005243: six
# persons, legs included. Together they hold every class of every scheme.
FIXTURE_IDS = ("2008_000726", "2010_005243")


@pytest.mark.parametrize("name", sorted(schema.SCHEMES))
def test_every_scheme_on_real_fixtures(pascal_part_dir, name):
    scheme = schema.get_scheme(name)
    present = set()
    for image_id in FIXTURE_IDS:
        anno, example = _decoded_fixture(pascal_part_dir / f"{image_id}.mat",
                                         pascal_part_dir / f"{image_id}.jpg")
        assert anno["person_mask"].max() >= 2
        labels = merge.merge_parts(example["parts_fine"], example["person_mask"], scheme)
        assert labels.dtype == tf.int32
        expected = ph.class_map_by_names(anno["parts"], anno["person_mask"], scheme)
        np.testing.assert_array_equal(labels.numpy(), expected, err_msg=image_id)
        present |= set(np.unique(expected).tolist())
    # Not vacuous: every class of the scheme (the "other" region too) was compared.
    assert present == set(range(scheme.num_classes))


def test_scheme_by_name_or_object_inside_tf_data(pascal_part_dir):
    anno, example = _decoded_fixture(pascal_part_dir / "2008_000726.mat",
                                     pascal_part_dir / "2008_000726.jpg")
    scheme = schema.get_scheme("all4")
    ds = tf.data.Dataset.from_tensors(example).map(
        lambda d: merge.merge_parts(d["parts_fine"], d["person_mask"], "all4"))
    np.testing.assert_array_equal(
        next(iter(ds)).numpy(), ph.class_map_by_names(anno["parts"], anno["person_mask"], scheme))


@pytest.mark.parametrize("image_id", ["2008_000008", "2008_000026"])
def test_table_path_matches_published_all4_maps(image_id):
    # Published Pascal-Person-Part style maps (no "other" region) of held-out images.
    npz = HOLDOUT / "expected_all4.npz"
    if not npz.exists():
        pytest.skip(f"holdout maps not found at {npz}")
    published = np.load(npz)[image_id]
    base = HOLDOUT / "pascal_part" / image_id
    anno, example = _decoded_fixture(base.with_suffix(".mat"), base.with_suffix(".jpg"))
    all4 = schema.get_scheme("all4")
    no_other = schema.Scheme("all4_no_other", all4.groups, other_region=False)
    labels = merge.merge_parts(example["parts_fine"], example["person_mask"], no_other)
    np.testing.assert_array_equal(labels.numpy(), published)
    # With the "other" region, exactly the uncovered person pixels change.
    with_other = merge.merge_parts(example["parts_fine"], example["person_mask"], all4)
    uncovered = (anno["person_mask"] > 0) & (published == 0)
    assert uncovered.sum() > 0
    np.testing.assert_array_equal(with_other.numpy(),
                                  np.where(uncovered, all4.other_id, published))


def test_paper_merge_groups():
    # DESIGN.md §1, written out here independently of schema.py.
    head = {"head", "leye", "reye", "lear", "rear", "lebrow", "rebrow", "nose", "mouth",
            "hair"}
    body = {"torso", "neck"}
    hand = {"llarm", "luarm", "lhand", "rlarm", "ruarm", "rhand"}
    leg = {"llleg", "luleg", "lfoot", "rlleg", "ruleg", "rfoot"}
    for name, parts in (("head", head), ("body", body), ("hand", hand), ("leg", leg)):
        scheme = schema.get_scheme(name)
        assert [set(p) for _, p in scheme.groups] == [parts]
        assert scheme.class_names[0] == "background" and scheme.other_id == 2
    all4 = schema.get_scheme("all4")
    assert [set(p) for _, p in all4.groups] == [head, body, hand, leg]
    assert all4.other_id == 5


def test_out_of_vocabulary_fine_id_fails():
    fine = tf.constant([[0, schema.NUM_FINE]], tf.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError):
        merge.merge_parts(fine, tf.zeros_like(fine), "all4")


def test_unknown_scheme_is_named():
    with pytest.raises(ValueError, match="unknown part scheme 'arms'"):
        merge.merge_parts(tf.zeros([2, 2], tf.uint8), tf.zeros([2, 2], tf.uint8), "arms")


# === Human region ===

def test_box_region_hand_computed():
    # H = 4, W = 6. Pixel (r, c) is inside when ymin*H <= r + .5 < ymax*H, etc.
    boxes = tf.constant([
        [0.25, 1 / 6, 0.75, 0.5],     # rows [1, 3) x cols [1, 3): rows 1-2, cols 1-2
        [0.375, 0.75, 0.625, 1.0],    # rows [1.5, 2.5) -> row 1 only; cols [4.5, 6) -> 4, 5
        [0.5, 0.5, 0.5, 0.9],         # degenerate (ymin == ymax): nothing
    ], tf.float32)
    region = merge.human_region(boxes, None, 4, 6, mode="boxes")
    expected = np.array([
        [0, 0, 0, 0, 0, 0],
        [0, 1, 1, 0, 1, 1],
        [0, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ], np.float32)[..., None]
    assert region.dtype == tf.float32 and region.shape == (4, 6, 1)
    np.testing.assert_array_equal(region.numpy(), expected)


def test_box_region_of_pixel_edge_boxes_is_the_box():
    # A box given by pixel edges covers exactly its pixels, overlaps count once.
    arrays = ph.synthetic_arrays("x", height=20, width=28, seed=5, num_persons=3)
    region = merge.human_region(arrays["boxes"], arrays["person_mask"], 20, 28).numpy()
    expected = np.zeros((20, 28), np.float32)
    for ymin, xmin, ymax, xmax in arrays["boxes"]:
        expected[round(ymin * 20):round(ymax * 20), round(xmin * 28):round(xmax * 28)] = 1
    np.testing.assert_array_equal(region[..., 0], expected)


def test_region_without_boxes_is_empty_and_instance_mode():
    mask = np.array([[0, 2, 2], [1, 0, 0]], np.uint8)
    empty = merge.human_region(tf.zeros([0, 4]), mask, 2, 3, mode="boxes")
    np.testing.assert_array_equal(empty.numpy(), np.zeros((2, 3, 1)))
    inst = merge.human_region(tf.zeros([0, 4]), mask, 2, 3, mode="instance")
    np.testing.assert_array_equal(inst.numpy()[..., 0], (mask > 0).astype(np.float32))
    with pytest.raises(ValueError, match="human_region_mode"):
        merge.human_region(tf.zeros([0, 4]), mask, 2, 3, mode="mask")


def test_add_training_targets_inside_tf_data():
    arrays = ph.synthetic_arrays("t", height=10, width=12, seed=2)
    ds = tf.data.Dataset.from_tensors(ph.serialize(arrays)).map(
        lambda s: merge.add_training_targets(decode.decode_example(s), scheme="head",
                                             human_region_mode="instance"))
    out = next(iter(ds))
    assert out["labels"].dtype == tf.int32 and out["labels"].shape == (10, 12)
    assert out["human_region"].shape == (10, 12, 1)
    head = schema.get_scheme("head")
    table = head.lookup_table()
    expected = table[arrays["parts_fine"]].astype(np.int32)
    expected[(arrays["person_mask"] > 0) & (expected == 0)] = head.other_id
    np.testing.assert_array_equal(out["labels"].numpy(), expected)
    np.testing.assert_array_equal(out["human_region"].numpy()[..., 0],
                                  (arrays["person_mask"] > 0).astype(np.float32))
    assert "parts_fine" in out  # the decoded keys stay
