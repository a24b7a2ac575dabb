"""Tests of pipelines/augment.py, each op both eagerly and inside tf.data.

big_vision's ops_image_test: "you'd be surprised how much these two differ".
"""

import numpy as np
import pytest
import tensorflow as tf

import pipeline_helpers as ph
from pipelines import augment, merge, schema

SEEDS = [(s, 7) for s in range(12)]


def _example(height=10, width=14, seed=0, scheme="all4"):
    """A decoded-like example with merged labels: every spatial key of the pipeline."""
    a = ph.synthetic_arrays("aug", height=height, width=width, seed=seed)
    d = {
        "image": tf.constant(a["image"]),
        "id": tf.constant("aug"),
        "height": tf.constant(height, tf.int32),
        "width": tf.constant(width, tf.int32),
        "boxes": tf.constant(a["boxes"]),
        "person_mask": tf.constant(a["person_mask"]),
        "parts_fine": tf.constant(a["parts_fine"]),
    }
    return merge.add_training_targets(d, scheme=scheme)


def _coordinate_example(height, width):
    """image channels (row, col, 7); labels and region functions of (row, col)."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.stack([rows, cols, np.full_like(rows, 7)], -1).astype(np.float32)
    return {
        "image": tf.constant(image),
        "labels": tf.constant((rows * width + cols) % 200, tf.int32),
        "human_region": tf.constant(((rows + cols) % 2)[..., None], tf.float32),
        "parts_fine": tf.constant((rows * 3 + cols) % schema.NUM_FINE, tf.uint8),
        "id": tf.constant("coords"),
    }


def _in_dataset(op, d, seeds):
    """[op(d, seed) for seed in seeds], computed inside tf.data's map."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(seeds, tf.int64))
    ds = ds.map(lambda s: op(d, s), num_parallel_calls=tf.data.AUTOTUNE)
    return list(ds)


def _assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


# === Flip ===

@pytest.mark.parametrize("name", sorted(schema.SCHEMES))
def test_every_scheme_merges_left_and_right_alike(name):
    # What lets random_flip mirror merged labels without permuting them.
    table = schema.get_scheme(name).lookup_table()
    np.testing.assert_array_equal(table[schema.flip_permutation()], table)


def test_flip_swaps_left_and_right_parts():
    height, width = 4, 5
    fine = np.zeros((height, width), np.uint8)
    fine[1, 1] = schema.PART_ID["luarm"]
    fine[2, 0] = schema.PART_ID["lhand"]
    fine[3, 4] = schema.PART_ID["rfoot"]
    fine[0, 2] = schema.PART_ID["torso"]
    d = _coordinate_example(height, width)
    d["parts_fine"] = tf.constant(fine)
    d["boxes"] = tf.constant([[0.25, 0.2, 0.75, 0.6]])
    out = augment.flip_left_right(d)

    got = out["parts_fine"].numpy()
    assert got[1, width - 1 - 1] == schema.PART_ID["ruarm"]
    assert got[2, width - 1 - 0] == schema.PART_ID["rhand"]
    assert got[3, width - 1 - 4] == schema.PART_ID["lfoot"]
    assert got[0, width - 1 - 2] == schema.PART_ID["torso"]
    assert np.count_nonzero(got) == 4
    image = out["image"].numpy()
    np.testing.assert_array_equal(image[..., 1], (width - 1) - d["image"].numpy()[..., 1])
    np.testing.assert_array_equal(out["labels"].numpy(), d["labels"].numpy()[:, ::-1])
    np.testing.assert_allclose(out["boxes"].numpy(), [[0.25, 0.4, 0.75, 0.8]], atol=1e-6)
    twice = augment.flip_left_right(out)
    np.testing.assert_allclose(twice.pop("boxes").numpy(), d["boxes"].numpy(), atol=1e-6)
    _assert_same(twice, {k: v for k, v in d.items() if k != "boxes"})


@pytest.mark.parametrize("name", sorted(schema.SCHEMES))
def test_flip_before_merge_equals_merge_then_mirror(name):
    d = _example(seed=4)
    flipped = augment.flip_left_right(d)
    labels = merge.merge_parts(flipped["parts_fine"], flipped["person_mask"], name)
    merged = merge.merge_parts(d["parts_fine"], d["person_mask"], name)
    np.testing.assert_array_equal(labels.numpy(), merged.numpy()[:, ::-1])
    # The box region of the flipped boxes is the mirrored box region.
    region = merge.human_region(flipped["boxes"], None, 10, 14)
    np.testing.assert_array_equal(region.numpy(), d["human_region"].numpy()[:, ::-1])


def test_random_flip_eager_equals_dataset_and_flips_sometimes():
    d = _example()
    eager = [augment.random_flip(d, s) for s in SEEDS]
    for a, b in zip(eager, _in_dataset(augment.random_flip, d, SEEDS)):
        _assert_same(a, b)
    flipped = [bool(np.any(e["image"].numpy() != d["image"].numpy())) for e in eager]
    assert 0 < sum(flipped) < len(SEEDS)
    # Same seed, same outcome.
    _assert_same(augment.random_flip(d, SEEDS[3]), eager[3])


# === Scale ===

def test_random_scale_eager_equals_dataset_and_keeps_label_values():
    d = _example(height=11, width=13)
    d["diagnostic_labels"] = d["labels"]
    op = lambda x, s: augment.random_scale(x, 0.5, 1.7, s)  # noqa: E731
    eager = [op(d, s) for s in SEEDS]
    for a, b in zip(eager, _in_dataset(op, d, SEEDS)):
        _assert_same(a, b)
    sizes = set()
    labels_in = set(np.unique(d["labels"]).tolist())
    fine_in = set(np.unique(d["parts_fine"]).tolist())
    for e in eager:
        h, w = e["image"].shape[:2]
        sizes.add((h, w))
        assert (int(e["height"]), int(e["width"])) == (h, w)
        assert round(11 * 0.5) <= h <= round(11 * 1.7)
        assert e["image"].dtype == tf.float32
        assert e["labels"].dtype == tf.int32 and e["labels"].shape == (h, w)
        assert e["human_region"].shape == (h, w, 1)
        # Nearest only: no class id, fine id or region value is invented.
        assert set(np.unique(e["labels"]).tolist()) <= labels_in
        assert set(np.unique(e["diagnostic_labels"]).tolist()) <= labels_in
        assert set(np.unique(e["parts_fine"]).tolist()) <= fine_in
        assert set(np.unique(e["human_region"]).tolist()) <= {0.0, 1.0}
    assert len(sizes) > 3  # the scale is random


def test_scale_one_is_identity_on_maps():
    d = _example()
    out = augment.random_scale(d, 1.0, 1.0, (1, 2))
    for key in ("labels", "human_region", "parts_fine", "person_mask"):
        np.testing.assert_array_equal(out[key].numpy(), d[key].numpy(), err_msg=key)
    np.testing.assert_allclose(out["image"].numpy(), d["image"].numpy().astype(np.float32),
                               atol=1e-3)


def test_random_scale_refuses_bad_range():
    with pytest.raises(ValueError, match="min_scale"):
        augment.random_scale(_example(), 1.5, 0.5, (0, 0))


# === Crop or pad ===

def test_pad_values_and_exact_pixels():
    d = _coordinate_example(5, 6)
    out = augment.crop_or_pad(d, 8, [0, 0])
    image = out["image"].numpy()
    np.testing.assert_array_equal(image[:5, :6], d["image"].numpy())  # bit-exact
    np.testing.assert_allclose(image[5:, :], np.broadcast_to(augment.MEAN_RGB, (3, 8, 3)))
    np.testing.assert_allclose(image[:, 6:], np.broadcast_to(augment.MEAN_RGB, (8, 2, 3)))
    labels = out["labels"].numpy()
    np.testing.assert_array_equal(labels[:5, :6], d["labels"].numpy())
    assert np.all(labels[5:, :] == schema.IGNORE_LABEL) and np.all(labels[:, 6:] == 255)
    region = out["human_region"].numpy()
    assert region.shape == (8, 8, 1) and region[5:].sum() == 0 and region[:, 6:].sum() == 0
    assert out["parts_fine"].numpy()[5:].sum() == 0
    # Zero after the model's mean subtraction.
    np.testing.assert_allclose(image[6, 7] - np.asarray(augment.MEAN_RGB), 0, atol=1e-5)


def test_random_crop_eager_equals_dataset_and_crops_all_maps_together():
    d = _coordinate_example(13, 9)
    op = lambda x, s: augment.random_crop_or_pad(x, (6, 11), s)  # noqa: E731
    eager = [op(d, s) for s in SEEDS]
    in_ds = _in_dataset(op, d, SEEDS)
    offsets = set()
    for a, b in zip(eager, in_ds):
        _assert_same(a, b)
        image = a["image"].numpy()
        assert image.shape == (6, 11, 3) and a["labels"].shape == (6, 11)
        inside = image[..., 2] == 7  # pixels of the image, not padding
        assert inside.any() and not inside.all()  # width 9 < 11: padded on the right
        rows = image[..., 0].astype(int)
        cols = image[..., 1].astype(int)
        offsets.add((rows[0, 0], cols[0, 0]))
        np.testing.assert_array_equal(a["labels"].numpy()[inside],
                                      ((rows * 9 + cols) % 200)[inside])
        np.testing.assert_array_equal(a["human_region"].numpy()[..., 0][inside],
                                      ((rows + cols) % 2)[inside])
        assert np.all(a["labels"].numpy()[~inside] == 255)
        np.testing.assert_array_equal(a["parts_fine"].numpy()[inside],
                                      ((rows * 3 + cols) % schema.NUM_FINE)[inside])
    assert len(offsets) > 3  # the offset is random
    # Static shapes inside tf.data.
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(SEEDS, tf.int64))
    spec = ds.map(lambda s: op(d, s)).element_spec
    assert spec["image"].shape == (6, 11, 3) and spec["labels"].shape == (6, 11)
    assert spec["human_region"].shape == (6, 11, 1)


@pytest.mark.parametrize("offset", [(0, 0), (3, 5), (6, 2)])
def test_cropped_boxes_give_the_cropped_region(offset):
    d = _example(height=12, width=14, seed=6)
    out = augment.crop_or_pad(d, (6, 9), offset)
    region = merge.human_region(out["boxes"], None, 6, 9)
    np.testing.assert_array_equal(region.numpy(), out["human_region"].numpy())
    assert (int(out["height"]), int(out["width"])) == (6, 9)


def test_crop_size_must_be_positive():
    with pytest.raises(ValueError, match="crop_size"):
        augment.random_crop_or_pad(_example(), 0, (0, 0))


# === The chain of the training streams ===

def _chain(d, seed):
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    d = augment.random_flip(d, seeds[0])
    d = merge.add_training_targets(d, scheme="all4")
    d = augment.random_scale(d, 0.5, 1.5, seeds[1])
    return augment.random_crop_or_pad(d, 8, seeds[2])


def test_chain_eager_equals_dataset_and_labels_stay_valid():
    a = ph.synthetic_arrays("chain", height=10, width=12, seed=9)
    d = {"image": tf.constant(a["image"]), "id": tf.constant("chain"),
         "height": tf.constant(10), "width": tf.constant(12),
         "boxes": tf.constant(a["boxes"]), "person_mask": tf.constant(a["person_mask"]),
         "parts_fine": tf.constant(a["parts_fine"])}
    valid = set(range(schema.get_scheme("all4").num_classes)) | {schema.IGNORE_LABEL}
    seen = set()
    for e, g in zip([_chain(d, s) for s in SEEDS], _in_dataset(_chain, d, SEEDS)):
        _assert_same(e, g)
        values = set(np.unique(e["labels"]).tolist())
        assert values <= valid
        seen |= values
    assert schema.IGNORE_LABEL in seen and len(seen) > 3


def test_seed_dtype_does_not_matter():
    # stateless_split gives different seeds for int32 and int64 seeds of the same
    # values; the ops normalize, so a tuple (int32 eagerly) and an int64 tensor agree.
    d = _coordinate_example(13, 9)
    by_tuple = augment.random_crop_or_pad(d, 6, (3, 7))
    for dtype in (tf.int32, tf.int64):
        _assert_same(by_tuple, augment.random_crop_or_pad(d, 6, tf.constant([3, 7], dtype)))


# === Strong view and CutMix ===

def _noise_example(size=24, seed=0):
    rng = np.random.default_rng(seed)
    d = _coordinate_example(size, size)
    d["image"] = tf.constant(rng.uniform(0, 255, (size, size, 3)).astype(np.float32))
    return d


def test_strong_view_keeps_image_region_and_labels_aligned():
    """No pixel moves: the strong image is best aligned with the weak one at shift 0,
    every other map is left as it is, whatever the photometric draw."""
    d = _noise_example()
    boxes, changed = set(), 0
    for seed in SEEDS:
        out = augment.strong_view(d, seed)
        for key in d:
            np.testing.assert_array_equal(np.asarray(out[key]), np.asarray(d[key]),
                                          err_msg=key)
        strong = out["strong_image"].numpy()
        assert strong.shape == (24, 24, 3) and strong.min() >= 0 and strong.max() <= 255
        assert ph.best_shift(ph.luma(d["image"]), ph.luma(strong)) == (0, 0), seed
        box = out["cutmix_box"].numpy()
        assert box.shape == (24, 24) and set(np.unique(box)) <= {0.0, 1.0}
        boxes.add(bool(box.any()))
        changed += not np.allclose(strong, d["image"].numpy())
    # over 12 draws: with and without a box (probability 0.5), and the image changed
    # by most (no jitter, no grayscale, no blur: probability 0.2 * 0.8 * 0.5 = 0.08)
    assert boxes == {True, False}
    assert changed >= 9


def test_strong_view_same_eagerly_and_in_tf_data():
    d = _noise_example()
    eager = [augment.strong_view(d, s) for s in SEEDS[:4]]
    in_data = _in_dataset(augment.strong_view, d, SEEDS[:4])
    for a, b in zip(eager, in_data):
        for key in ("strong_image", "cutmix_box"):
            np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), atol=1e-3)


def test_photometric_ops_by_hand():
    rng = np.random.default_rng(1)
    image = tf.constant(rng.uniform(0, 255, (6, 7, 3)).astype(np.float32))
    same = augment.color_jitter(image, brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0)
    np.testing.assert_allclose(same.numpy(), image.numpy(), atol=1e-3)
    # brightness 0.5 halves every pixel
    half = augment.color_jitter(image, brightness=0.5, contrast=1.0, saturation=1.0, hue=0.0)
    np.testing.assert_allclose(half.numpy(), image.numpy() / 2, atol=1e-3)
    # saturation 0 is the grayscale image
    gray = augment.color_jitter(image, brightness=1.0, contrast=1.0, saturation=0.0, hue=0.0)
    np.testing.assert_allclose(gray.numpy(), augment.grayscale(image).numpy(), atol=1e-3)
    luma = ph.luma(image.numpy())
    np.testing.assert_allclose(augment.grayscale(image).numpy()[..., 1], luma, atol=1e-3)
    # contrast 0 gives the mean luma everywhere
    flat = augment.color_jitter(image, brightness=1.0, contrast=0.0, saturation=1.0, hue=0.0)
    np.testing.assert_allclose(flat.numpy(), np.full((6, 7, 3), luma.mean()), atol=1e-2)
    # a blur keeps a constant image and the position of an edge
    const = tf.fill([9, 9, 3], 80.0)
    np.testing.assert_allclose(augment.gaussian_blur(const, 2.0).numpy(), 80.0, atol=1e-3)
    edge = np.zeros((9, 12, 3), np.float32)
    edge[:, 6:] = 255.0
    blurred = augment.gaussian_blur(tf.constant(edge), 1.5).numpy()[4, :, 0]
    assert np.argmax(np.diff(blurred)) == 5  # the steepest step is still between 5 and 6
    np.testing.assert_allclose(blurred[:6] + blurred[::-1][:6], 255.0, atol=1e-2)


def test_cutmix_box_shape_and_size():
    areas, empty = [], 0
    for s in range(200):
        box = augment.random_cutmix_box(40, 50, (s, 3)).numpy()
        if not box.any():
            empty += 1
            continue
        rows, cols = np.nonzero(box)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert box.sum() == h * w  # one rectangle
        areas.append(h * w / (40 * 50))
    assert 60 < empty < 140  # probability 0.5
    assert min(areas) >= 0.005 and max(areas) <= 0.41


def test_cutmix_mixes_images_regions_and_pseudo_labels_with_the_same_box():
    """Image values say which image a pixel comes from; after one `cutmix` call the
    region and the feature-resolution pseudo-labels of every position say the same."""
    from coseg_tf import masking

    b, size = 3, 17  # a 17 x 17 crop has a 3 x 3 feature grid (cell k on pixel 8k)
    source = np.arange(b, dtype=np.float32)[:, None, None]
    images = np.broadcast_to(source[..., None], (b, size, size, 3)).astype(np.float32)
    regions = np.zeros((b, size, size, 1), np.float32)
    regions[1] = 1.0                      # only image 1 is all person
    pseudo = np.broadcast_to(np.arange(b, dtype=np.int32)[:, None, None] + 10,
                             (b, 3, 3)).copy()
    box = np.zeros((b, size, size), np.float32)
    box[0, 0:9, 0:9] = 1                  # cells (0, 0), (0, 1), (1, 0), (1, 1)
    box[2, 8:17, 16:17] = 1               # cells (1, 2), (2, 2)
    partner = augment.cutmix_partner(b)
    assert partner.numpy().tolist() == [1, 2, 0]
    pixels = augment.cutmix({"image": images, "human_region": regions}, box, partner)
    box_f = masking.resize_region(box[..., None], (3, 3))[..., 0]
    cells = augment.cutmix({"pseudo_labels": pseudo}, box_f, partner)
    shown = pixels["image"].numpy()[..., 0]           # which image each pixel shows
    for i in range(b):
        np.testing.assert_array_equal(shown[i], np.where(box[i] > 0, (i + 1) % b, i))
        np.testing.assert_array_equal(pixels["human_region"].numpy()[i, ..., 0],
                                      (shown[i] == 1).astype(np.float32))
        # the pseudo-label of cell k is that of the image pixel 8k shows
        np.testing.assert_array_equal(cells["pseudo_labels"].numpy()[i],
                                      shown[i][::8, ::8].astype(np.int32) + 10)
    with pytest.raises(ValueError, match="share B, H, W"):
        augment.cutmix({"image": images}, box[:, :9, :9], partner)
