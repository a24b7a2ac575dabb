"""Tests of pipelines/streams.py: files and ids, the labeled subset, every stream."""

import random

import keras
import numpy as np
import pytest
import tensorflow as tf

import pipeline_helpers as ph
from pipelines import schema, streams

CROP = 16
NUM_IMAGES = 8
NUM_SHARDS = 2


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """8 tiny synthetic examples in 2 shards, no manifest: (pattern, arrays by id)."""
    directory = tmp_path_factory.mktemp("records")
    arrays = [ph.synthetic_arrays(f"2008_{i:06d}", height=12 + i % 3, width=18 + i,
                                  seed=i) for i in range(NUM_IMAGES)]
    ph.write_split(directory, "train", arrays, NUM_SHARDS)
    return str(directory / "train-*.tfrecord"), {a["id"]: a for a in arrays}


def _first(ds, n=1):
    return [tf.nest.map_structure(lambda t: t.numpy(), e) for e in ds.take(n)]


def _merged(arrays, scheme):
    """int32 class map of synthetic arrays by part names (not the lookup table)."""
    parts = [(name, arrays["parts_fine"] == schema.PART_ID[name]) for name in schema.PART_NAMES]
    return ph.class_map_by_names(parts, arrays["person_mask"], schema.get_scheme(scheme))


def test_select_labeled_ids_by_seed():
    pool = [f"id{i:03d}" for i in range(50)]
    a = streams.select_labeled_ids(pool, num_labeled=10, seed=1)
    assert a == streams.select_labeled_ids(list(reversed(pool)), num_labeled=10, seed=1)
    assert len(a) == 10 == len(set(a)) and set(a) <= set(pool) and a == sorted(a)
    assert a != streams.select_labeled_ids(pool, num_labeled=10, seed=2)
    # For one seed a smaller set is inside a larger one.
    assert set(streams.select_labeled_ids(pool, num_labeled=5, seed=1)) <= set(a)
    assert streams.select_labeled_ids(pool, num_labeled=50, seed=0) == pool


@pytest.mark.parametrize("num_labeled", [0, -3, 51])
def test_select_labeled_ids_out_of_range(num_labeled):
    pool = [f"id{i:03d}" for i in range(50)]
    with pytest.raises(ValueError, match=f"num_labeled={num_labeled}") as err:
        streams.select_labeled_ids(pool, num_labeled=num_labeled, seed=0)
    assert "50" in str(err.value)


def test_select_labeled_ids_explicit_list():
    pool = ["a", "b", "c", "d"]
    assert streams.select_labeled_ids(pool, num_labeled=None, seed=0,
                                      labeled_ids=["c", "a"]) == ["c", "a"]
    with pytest.raises(ValueError, match="'x'"):
        streams.select_labeled_ids(pool, num_labeled=None, seed=0, labeled_ids=["a", "x"])
    with pytest.raises(ValueError, match="num_labeled=3"):
        streams.select_labeled_ids(pool, num_labeled=3, seed=0, labeled_ids=["a", "b"])
    with pytest.raises(ValueError, match="repeats"):
        streams.select_labeled_ids(pool, num_labeled=None, seed=0, labeled_ids=["a", "a"])


# === Streams ===

def test_labeled_dataset_shapes_ids_and_labels(split):
    pattern, arrays = split
    ids = streams.select_labeled_ids(list(arrays), num_labeled=3, seed=0)
    ds = streams.labeled_dataset(pattern, ids=ids, scheme="all4", batch_size=2,
                                 crop_size=CROP)
    spec = ds.element_spec
    assert sorted(spec) == ["human_region", "id", "image", "labels"]
    assert spec["image"] == tf.TensorSpec([2, CROP, CROP, 3], tf.float32)
    assert spec["human_region"] == tf.TensorSpec([2, CROP, CROP, 1], tf.float32)
    assert spec["labels"] == tf.TensorSpec([2, CROP, CROP], tf.int32)
    assert spec["id"] == tf.TensorSpec([2], tf.string)
    seen = set()
    for batch in _first(ds, 4):
        seen |= {i.decode() for i in batch["id"]}
        assert set(np.unique(batch["labels"])) <= set(range(6)) | {255}
        assert set(np.unique(batch["human_region"])) <= {0.0, 1.0}
        assert 0 <= batch["image"].min() and batch["image"].max() <= 255
    assert seen == set(ids)  # 8 elements over 3 ids, repeated: every id, no other


def test_labeled_dataset_content_flipped_or_not(split):
    # No scale and a crop larger than every image (offset 0, padding only): each element
    # is the record's image and merged labels, mirrored or not, padded.
    pattern, arrays = split
    ids = sorted(arrays)[:4]
    ds = streams.labeled_dataset(pattern, ids=ids, scheme="all4", batch_size=1,
                                 crop_size=32, min_scale=1.0, max_scale=1.0, flip=True)
    outcomes = set()
    for batch in _first(ds, 12):
        a = arrays[batch["id"][0].decode()]
        h, w = a["height"], a["width"]
        image = ph.pil_decode(ph.jpeg_bytes(a["image"])).astype(np.float32)
        labels = _merged(a, "all4")
        region = (a["person_mask"] > 0).astype(np.float32)  # tight boxes of rectangles
        flipped = not np.array_equal(batch["image"][0, :h, :w], image)
        if flipped:
            image, labels, region = image[:, ::-1], labels[:, ::-1], region[:, ::-1]
        outcomes.add(flipped)
        np.testing.assert_array_equal(batch["image"][0, :h, :w], image)
        np.testing.assert_allclose(batch["image"][0, h:], np.broadcast_to(
            [123.68, 116.779, 103.939], (32 - h, 32, 3)))
        np.testing.assert_array_equal(batch["labels"][0, :h, :w], labels)
        assert np.all(batch["labels"][0, h:] == 255) and np.all(batch["labels"][0, :, w:] == 255)
        np.testing.assert_array_equal(batch["human_region"][0, :h, :w, 0], region)
        assert batch["human_region"][0, h:].sum() == 0
    assert outcomes == {False, True}


def test_labeled_dataset_is_deterministic_for_a_seed(split):
    pattern, arrays = split
    ids = sorted(arrays)[:4]
    make = lambda seed: streams.labeled_dataset(  # noqa: E731
        pattern, ids=ids, scheme="head", batch_size=2, crop_size=CROP, seed=seed)
    a, b, c = _first(make(0), 3), _first(make(0), 3), _first(make(5), 3)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    assert any(not np.array_equal(x["image"], z["image"]) for x, z in zip(a, c))


def test_labeled_dataset_cached_equals_uncached(split):
    pattern, arrays = split
    ids = sorted(arrays)[2:5]
    kw = dict(ids=ids, scheme="leg", batch_size=2, crop_size=CROP, seed=3)
    for x, y in zip(_first(streams.labeled_dataset(pattern, cache=True, **kw), 3),
                    _first(streams.labeled_dataset(pattern, cache=False, **kw), 3)):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


@pytest.fixture
def global_random_state():
    """Restores what a test changes of the global random state (the TF seed unset)."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    yield
    tf.random.set_seed(None)
    np.random.set_state(numpy_state)
    random.setstate(python_state)


def _every_stream(pattern, ids, steps):
    """The first `steps` batches of each training stream, for one seed (several epochs)."""
    kw = dict(crop_size=CROP, seed=11)
    return {
        "labeled": _first(streams.labeled_dataset(pattern, ids=ids, scheme="all4",
                                                  batch_size=2, **kw), steps),
        "labeled cached": _first(streams.labeled_dataset(pattern, ids=ids, scheme="all4",
                                                         batch_size=2, cache=True, **kw),
                                 steps),
        "unlabeled": _first(streams.unlabeled_dataset(pattern, batch_size=3, **kw), steps),
        "train": _first(streams.train_dataset(pattern, scheme="all4",
                                              labeled_ids=ids, batch_labeled=2,
                                              batch_unlabeled=3, **kw), steps),
        "train strong": _first(streams.train_dataset(
            pattern, scheme="all4", labeled_ids=ids, batch_labeled=2, batch_unlabeled=3,
            needs=streams.StreamNeeds(strong_views=2), **kw), steps),
    }


def _assert_same_streams(a, b, state):
    for name in a:
        for step, (x, y) in enumerate(zip(a[name], b[name])):
            tf.nest.map_structure(
                lambda u, v: np.testing.assert_array_equal(
                    u, v, err_msg=f"{name} stream, batch {step}, {state}"), x, y)


def test_streams_do_not_depend_on_global_random_state(split, global_random_state):
    # A seed's stream must not change with the global seed or with random ops that ran
    # before (a model build, other tests): runs resume and tests compare streams.
    pattern, arrays = split
    ids = sorted(arrays)[1:6]
    steps = 6  # 12 labeled elements over 5 ids, 18 unlabeled over 8: beyond epoch 2
    tf.random.set_seed(None)
    plain = _every_stream(pattern, ids, steps)
    # The cached stream shuffles the same sequence as the uncached one, every epoch.
    _assert_same_streams({"labeled": plain["labeled"]}, {"labeled": plain["labeled cached"]},
                         "cached vs uncached")

    tf.random.set_seed(123)
    tf.random.uniform([3])
    list(tf.data.Dataset.range(4).shuffle(4).as_numpy_iterator())
    _assert_same_streams(plain, _every_stream(pattern, ids, steps),
                         "after tf.random.set_seed(123) and random ops")

    keras.utils.set_random_seed(7)
    keras.layers.Dense(3)(tf.zeros([1, 2]))  # draws initial weights, as a model build
    tf.random.normal([2])
    _assert_same_streams(plain, _every_stream(pattern, ids, steps),
                         "after keras.utils.set_random_seed(7) and random ops")


def test_every_epoch_is_a_new_permutation(split):
    pattern, arrays = split
    ids = sorted(arrays)
    kw = dict(batch_size=1, crop_size=CROP, seed=4)
    for ds in (streams.labeled_dataset(pattern, ids=ids, scheme="all4", **kw),
               streams.labeled_dataset(pattern, ids=ids, scheme="all4", cache=True, **kw),
               streams.unlabeled_dataset(pattern, **kw)):
        order = [b["id"][0].decode() for b in _first(ds, 3 * NUM_IMAGES)]
        epochs = [order[e * NUM_IMAGES:(e + 1) * NUM_IMAGES] for e in range(3)]
        assert all(sorted(epoch) == ids for epoch in epochs)  # each image once an epoch
        assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2]
        # A function of its arguments: reading the same dataset again replays it.
        assert [b["id"][0].decode() for b in _first(ds, 3 * NUM_IMAGES)] == order


def test_empty_stream_fails_instead_of_hanging(split, tmp_path):
    pattern, _ = split
    ds = streams.labeled_dataset(pattern, ids=["2099_000001"], scheme="all4", batch_size=1,
                                 crop_size=CROP, check_ids=False)
    assert ds.cardinality() == tf.data.INFINITE_CARDINALITY
    with pytest.raises(tf.errors.FailedPreconditionError, match="infinite"):
        _first(ds)
    ph.write_tfrecord(tmp_path / "empty.tfrecord", [])
    with pytest.raises(tf.errors.FailedPreconditionError, match="infinite"):
        _first(streams.unlabeled_dataset(str(tmp_path / "empty.tfrecord"), batch_size=1,
                                         crop_size=CROP))


def test_labeled_dataset_refuses_ids_not_in_files(split):
    pattern, _ = split
    with pytest.raises(ValueError, match="2099_000001"):
        streams.labeled_dataset(pattern, ids=["2099_000001"], scheme="all4", batch_size=1,
                                crop_size=CROP)


def test_unlabeled_dataset_carries_no_part_labels(split):
    pattern, arrays = split
    ds = streams.unlabeled_dataset(pattern, batch_size=3, crop_size=CROP, scheme="all4")
    assert sorted(ds.element_spec) == ["human_region", "id", "image"]
    assert ds.element_spec["image"] == tf.TensorSpec([3, CROP, CROP, 3], tf.float32)
    assert ds.element_spec["human_region"] == tf.TensorSpec([3, CROP, CROP, 1], tf.float32)
    seen = set()
    for batch in _first(ds, 6):  # 18 elements: more than one pass over the 8 images
        assert sorted(batch) == ["human_region", "id", "image"]
        seen |= {i.decode() for i in batch["id"]}
    assert seen == set(arrays)  # ALL training images


def test_unlabeled_diagnostics_key_holds_the_merged_labels(split):
    pattern, arrays = split
    # No scale, no flip, a crop larger than every image: offset 0, padding only, so the
    # expected map is the merged map padded with 255.
    kw = dict(batch_size=2, crop_size=32, min_scale=1.0, max_scale=1.0, flip=False,
              scheme="hand", human_region_mode="instance")
    ds = streams.unlabeled_dataset(pattern, diagnostics=True, **kw)
    assert ds.element_spec["diagnostic_labels"] == tf.TensorSpec([2, 32, 32], tf.int32)
    plain = _first(streams.unlabeled_dataset(pattern, diagnostics=False, **kw), 2)
    for batch, other in zip(_first(ds, 2), plain):
        assert sorted(batch) == ["diagnostic_labels", "human_region", "id", "image"]
        # The switch adds a key and changes nothing else.
        for key in other:
            np.testing.assert_array_equal(batch[key], other[key], err_msg=key)
        for i, image_id in enumerate(batch["id"]):
            a = arrays[image_id.decode()]
            h, w = a["height"], a["width"]
            expected = np.full((32, 32), 255, np.int32)
            expected[:h, :w] = _merged(a, "hand")
            np.testing.assert_array_equal(batch["diagnostic_labels"][i], expected)
            np.testing.assert_array_equal(batch["human_region"][i, :h, :w, 0],
                                          (a["person_mask"] > 0).astype(np.float32))


def test_unlabeled_diagnostics_needs_a_scheme(split):
    with pytest.raises(ValueError, match="scheme"):
        streams.unlabeled_dataset(split[0], batch_size=1, crop_size=CROP, diagnostics=True)


def _expected_image_labels(a, scheme):
    num_classes = schema.get_scheme(scheme).num_classes
    present = np.zeros(num_classes, np.float32)
    present[np.unique(_merged(a, scheme))] = 1
    present[0] = 1
    return present


def test_unlabeled_image_labels_are_the_classes_of_the_whole_image(split):
    pattern, arrays = split
    # A crop much smaller than the images: the image-level labels still describe the
    # whole image, not the crop.
    kw = dict(batch_size=2, crop_size=4, scheme="all4")
    ds = streams.unlabeled_dataset(pattern, image_labels=True, **kw)
    assert ds.element_spec["image_labels"] == tf.TensorSpec([2, 5 + 1], tf.float32)
    plain = _first(streams.unlabeled_dataset(pattern, **kw), 4)
    seen = 0
    for batch, other in zip(_first(ds, 4), plain):
        assert sorted(batch) == ["human_region", "id", "image", "image_labels"]
        for key in other:  # the switch adds a key and changes nothing else
            np.testing.assert_array_equal(batch[key], other[key], err_msg=key)
        for i, image_id in enumerate(batch["id"]):
            expected = _expected_image_labels(arrays[image_id.decode()], "all4")
            np.testing.assert_array_equal(batch["image_labels"][i], expected)
            seen += expected[1:].sum() > 0
    assert seen > 0  # the case has images with parts


def test_image_level_labels_of_every_image(split):
    pattern, arrays = split
    labels = streams.image_level_labels(pattern, scheme="head")
    assert sorted(labels) == sorted(arrays)
    for image_id, a in arrays.items():
        np.testing.assert_array_equal(labels[image_id], _expected_image_labels(a, "head"))


@pytest.mark.parametrize("image_labels", [False, True])
def test_train_dataset_carries_image_labels_only_when_asked(split, image_labels):
    pattern, arrays = split
    ds = streams.train_dataset(pattern, scheme="all4", labeled_ids=sorted(arrays)[:2],
                               batch_labeled=1, batch_unlabeled=2, crop_size=CROP,
                               needs=streams.StreamNeeds(image_labels=image_labels))
    assert ("image_labels" in ds.element_spec["unlabeled"]) == image_labels
    assert "image_labels" not in ds.element_spec["labeled"]


@pytest.mark.parametrize("unlabeled,strong_views", [(False, 0), (True, 0), (True, 1),
                                                    (True, 2)])
def test_train_dataset_structure(split, unlabeled, strong_views):
    pattern, arrays = split
    needs = streams.StreamNeeds(unlabeled=unlabeled, strong_views=strong_views)
    ds = streams.train_dataset(pattern, scheme="all4", labeled_ids=sorted(arrays)[:2],
                               batch_labeled=1, batch_unlabeled=5, crop_size=CROP,
                               needs=needs)
    spec = ds.element_spec
    assert spec["labeled"]["image"].shape == (1, CROP, CROP, 3)
    assert spec["labeled"]["labels"] == tf.TensorSpec([1, CROP, CROP], tf.int32)
    if not unlabeled:
        assert sorted(spec) == ["labeled"]
    else:
        assert sorted(spec) == ["labeled", "unlabeled"]
        strong = [k for pair in streams.STRONG_VIEW_KEYS[:strong_views] for k in pair]
        assert sorted(spec["unlabeled"]) == sorted(["human_region", "id", "image"] + strong)
        assert spec["unlabeled"]["image"].shape == (5, CROP, CROP, 3)
        for image_key, box_key in streams.STRONG_VIEW_KEYS[:strong_views]:
            assert spec["unlabeled"][image_key] == tf.TensorSpec([5, CROP, CROP, 3],
                                                                 tf.float32)
            assert spec["unlabeled"][box_key] == tf.TensorSpec([5, CROP, CROP], tf.float32)
    step = _first(ds, 1)[0]
    assert step["labeled"]["id"][0].decode() in sorted(arrays)[:2]


def test_strong_views_ride_on_the_weak_crop(split):
    """The strong views leave every other key as it is (their own seeds) and keep the
    crop's geometry: each strong image is best aligned with the weak one unshifted."""
    pattern, _ = split
    kw = dict(batch_size=4, crop_size=CROP, seed=3, diagnostics=True, scheme="all4",
              min_scale=1.0, max_scale=1.5)
    plain = _first(streams.unlabeled_dataset(pattern, **kw), 2)
    strong = _first(streams.unlabeled_dataset(pattern, strong_views=2, **kw), 2)
    for a, b in zip(plain, strong):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        for image_key, box_key in streams.STRONG_VIEW_KEYS:
            assert b[box_key].shape == (4, CROP, CROP)
            for i in range(4):
                assert ph.best_shift(ph.luma(b["image"][i]), ph.luma(b[image_key][i]),
                                     reach=2) == (0, 0), (image_key, i)
        # two independent draws
        assert not np.array_equal(b["strong_image"], b["strong_image_2"])


def test_train_dataset_seeds(split):
    pattern, arrays = split
    make = lambda seed: streams.train_dataset(  # noqa: E731
        pattern, scheme="body", labeled_ids=sorted(arrays)[:3],
        batch_labeled=1, batch_unlabeled=3, crop_size=CROP, diagnostics=True, seed=seed)
    a, b, c = _first(make(1), 2), _first(make(1), 2), _first(make(2), 2)
    for x, y in zip(a, b):
        tf.nest.map_structure(np.testing.assert_array_equal, x, y)
    assert any(not np.array_equal(x["unlabeled"]["image"], z["unlabeled"]["image"])
               for x, z in zip(a, c))


def test_a_stream_started_at_a_position_is_the_rest_of_the_whole_stream(split):
    """Issue 15 case 4: a resumed run reads what it would have read had it never
    stopped. Batch 7 with 5 labeled ids (batch 2) and 8 images (batch 3) starts at
    labeled element 14 (2 whole epochs skipped by number, then 4 records) and unlabeled
    element 21 (2 epochs, then 5 records); cached or not; strong views included."""
    pattern, arrays = split
    ids = sorted(arrays)[1:6]
    steps, start_batch = 3, 7
    for cache in (False, True):
        make = lambda start: streams.train_dataset(  # noqa: E731
            pattern, needs=streams.StreamNeeds(strong_views=1), scheme="all4",
            labeled_ids=ids, batch_labeled=2,
            batch_unlabeled=3, crop_size=CROP, seed=5, diagnostics=True,
            cache_labeled=cache, start_batch=start)
        whole = _first(make(0), start_batch + steps)[start_batch:]
        _assert_same_streams({"train": whole}, {"train": _first(make(start_batch), steps)},
                             f"start_batch={start_batch}, cache={cache}")


def test_bad_arguments_are_named(split):
    pattern, arrays = split
    ids = sorted(arrays)[:2]
    with pytest.raises(ValueError, match="batch_size"):
        streams.labeled_dataset(pattern, ids=ids, scheme="all4", batch_size=0, crop_size=8)
    with pytest.raises(ValueError, match="crop_size"):
        streams.unlabeled_dataset(pattern, batch_size=1, crop_size=-1)
    with pytest.raises(ValueError, match="human_region_mode"):
        streams.unlabeled_dataset(pattern, batch_size=1, crop_size=8,
                                  human_region_mode="mask")
    with pytest.raises(ValueError, match="unknown part scheme"):
        streams.eval_dataset(pattern, scheme="arms")
    with pytest.raises(ValueError, match="batch_unlabeled"):
        streams.train_dataset(pattern, scheme="all4", labeled_ids=ids,
                              batch_labeled=1, batch_unlabeled=0, crop_size=8)
    with pytest.raises(ValueError, match="strong_views"):
        streams.StreamNeeds(strong_views=3)
    with pytest.raises(ValueError, match="unlabeled=True"):
        streams.StreamNeeds(unlabeled=False, strong_views=1)


def test_eval_dataset_whole_images(split):
    pattern, arrays = split
    ds = streams.eval_dataset(pattern, scheme="person_part6")
    assert ds.element_spec["image"] == tf.TensorSpec([1, None, None, 3], tf.float32)
    assert ds.element_spec["labels"] == tf.TensorSpec([1, None, None], tf.int32)
    batches = _first(ds, NUM_IMAGES + 1)
    assert [b["id"][0].decode() for b in batches] == streams.read_ids(pattern)
    for b in batches:
        a = arrays[b["id"][0].decode()]
        assert b["image"].shape == (1, a["height"], a["width"], 3)
        np.testing.assert_array_equal(b["labels"][0], _merged(a, "person_part6"))
        # Box region; the synthetic boxes are the tight boxes of the instance masks
        # (rectangles), so the two modes agree here.
        np.testing.assert_array_equal(b["human_region"][0, ..., 0],
                                      (a["person_mask"] > 0).astype(np.float32))


# === Box-only records (make_tfrecords.py --source=boxes_only) ===

def _write_boxes_only(directory, n=3):
    from pipelines import records

    examples = []
    for i in range(n):
        arrays = ph.synthetic_arrays(f"box_{i}", height=14, width=18, seed=20 + i)
        examples.append(records.make_example(
            jpeg=ph.jpeg_bytes(arrays["image"]), image_id=arrays["id"], height=14,
            width=18, boxes=arrays["boxes"]))
    return ph.write_tfrecord(directory / "boxes-00000-of-00001.tfrecord", examples)


def test_the_unlabeled_stream_reads_box_only_and_labeled_records_together(split, tmp_path):
    pattern, _ = split
    boxes = _write_boxes_only(tmp_path)
    ds = streams.unlabeled_dataset(f"{pattern},{boxes}", batch_size=4, crop_size=CROP,
                                   shuffle_buffer=16, seed=3)
    seen = set()
    for batch in _first(ds, 6):
        assert set(batch) == {"image", "human_region", "id"}
        seen |= {i.decode() for i in batch["id"]}
    assert {"box_0", "box_1", "box_2"} <= seen and len(seen) > 3


def test_a_box_only_record_in_the_labeled_stream_is_refused_naming_it(tmp_path):
    from pipelines import decode

    boxes = _write_boxes_only(tmp_path, n=2)
    ds = streams.labeled_dataset(boxes, ids=["box_0"], scheme="all4", batch_size=1,
                                 crop_size=CROP)
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        _first(ds)
    image_id, problem = decode.bad_record_in(err.value)
    assert image_id == "box_0" and "carries no part labels" in problem
