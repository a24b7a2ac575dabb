"""Tests of pipelines/decode.py: TFRecord write -> decode round trip, schema errors."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2, feature_pb2

import pipeline_helpers as ph
from pipelines import decode, records, schema


def _decode_in_dataset(serialized):
    ds = tf.data.Dataset.from_tensors(tf.constant(serialized)).map(decode.decode_example)
    return next(iter(ds))


def _example_without(serialized, drop=(), replace=None):
    """The serialized example with keys dropped / features replaced."""
    ex = example_pb2.Example.FromString(serialized)
    for key in drop:
        del ex.features.feature[key]
    for key, feature in (replace or {}).items():
        ex.features.feature[key].CopyFrom(feature)
    return ex.SerializeToString()


@pytest.mark.parametrize("where", ["eager", "dataset"])
def test_round_trip(where):
    arrays = ph.synthetic_arrays("2008_000001", height=12, width=17, seed=3)
    serialized = ph.serialize(arrays)
    out = (decode.decode_example(serialized) if where == "eager"
           else _decode_in_dataset(serialized))

    expected_dtypes = {"image": tf.uint8, "id": tf.string, "height": tf.int32,
                       "width": tf.int32, "boxes": tf.float32, "person_mask": tf.uint8,
                       "parts_fine": tf.uint8}
    assert {k: v.dtype for k, v in out.items()} == expected_dtypes
    assert out["image"].shape == (12, 17, 3)
    assert out["id"].numpy() == b"2008_000001"
    assert (int(out["height"]), int(out["width"])) == (12, 17)
    np.testing.assert_array_equal(out["boxes"].numpy(), arrays["boxes"])
    np.testing.assert_array_equal(out["person_mask"].numpy(), arrays["person_mask"])
    np.testing.assert_array_equal(out["parts_fine"].numpy(), arrays["parts_fine"])
    # The same pixels as libjpeg's default decoder (PIL).
    jpeg = records.parse_example(serialized)["jpeg"]
    np.testing.assert_array_equal(out["image"].numpy(), ph.pil_decode(jpeg))


def test_graph_shapes_are_static_where_known():
    spec = tf.data.Dataset.from_tensors(tf.constant(b"")).map(decode.decode_example).element_spec
    assert spec["image"].shape.as_list() == [None, None, 3]
    assert spec["person_mask"].shape.as_list() == [None, None]
    assert spec["parts_fine"].shape.as_list() == [None, None]
    assert spec["boxes"].shape.as_list() == [None, 4]
    assert spec["id"].shape.rank == 0 and spec["height"].shape.rank == 0


def test_image_without_persons_has_no_boxes():
    arrays = ph.synthetic_arrays("empty", height=8, width=8, num_persons=0)
    out = decode.decode_example(ph.serialize(arrays))
    assert out["boxes"].shape == (0, 4)


def test_grayscale_jpeg_decodes_to_rgb():
    import io
    from PIL import Image
    arrays = ph.synthetic_arrays("gray", height=8, width=10)
    buf = io.BytesIO()
    Image.fromarray(arrays["image"][..., 0], mode="L").save(buf, format="JPEG")
    serialized = records.make_example(
        jpeg=buf.getvalue(), image_id="gray", height=8, width=10, boxes=arrays["boxes"],
        person_mask=arrays["person_mask"], parts_fine=arrays["parts_fine"])
    assert decode.decode_example(serialized)["image"].shape == (8, 10, 3)


@pytest.mark.parametrize("where", ["eager", "dataset"])
def test_missing_keys_are_named(where):
    serialized = _example_without(ph.serialize(ph.synthetic_arrays("a")),
                                  drop=(schema.KEY_PARTS_FINE, schema.KEY_BOXES))
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        if where == "eager":
            decode.decode_example(serialized)
        else:
            _decode_in_dataset(serialized)
    message = str(err.value)
    assert "parts/fine" in message and "human/boxes" in message
    assert "not a coseg_tf example" in message
    # Keys that are there are not called missing.
    assert "image/encoded" not in message.split("missing feature keys:")[-1]


def test_record_of_another_schema_is_refused():
    # A DeepLab-style segmentation example: image/encoded, image/height, image/width
    # and a class map, but none of our person keys.
    feature = {
        "image/encoded": feature_pb2.Feature(bytes_list=feature_pb2.BytesList(
            value=[ph.jpeg_bytes(np.zeros((4, 4, 3), np.uint8))])),
        "image/height": feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[4])),
        "image/width": feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[4])),
        "image/segmentation/class/encoded": feature_pb2.Feature(
            bytes_list=feature_pb2.BytesList(value=[b""])),
    }
    serialized = example_pb2.Example(
        features=feature_pb2.Features(feature=feature)).SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        decode.decode_example(serialized)
    for key in (schema.KEY_ID, schema.KEY_BOXES, schema.KEY_PERSON_MASK,
                schema.KEY_PARTS_FINE):
        assert key in str(err.value)


def test_map_of_wrong_size_is_refused():
    arrays = ph.synthetic_arrays("bad", height=8, width=10)
    wrong = records.encode_png(np.zeros((8, 9), np.uint8))
    serialized = _example_without(ph.serialize(arrays), replace={
        schema.KEY_PARTS_FINE: feature_pb2.Feature(
            bytes_list=feature_pb2.BytesList(value=[wrong]))})
    with pytest.raises(tf.errors.InvalidArgumentError, match="parts/fine has size") as err:
        decode.decode_example(serialized)
    assert decode.bad_record_in(err.value) == (
        "bad", "parts/fine has size 8x9 but image/height, image/width say 8x10")


# === Record content the pipeline cannot use (issue 15 case 6) ===

def _with_parts(arrays, value, where=(1, 2)):
    arrays = dict(arrays, parts_fine=arrays["parts_fine"].copy())
    arrays["parts_fine"][where] = value
    return arrays


@pytest.mark.parametrize("value", [25, 200, 255])
@pytest.mark.parametrize("mode", ["eager", "tf.data"])
def test_part_id_outside_the_vocabulary_is_refused_naming_the_record(value, mode):
    serialized = ph.serialize(_with_parts(ph.synthetic_arrays("2008_x'é"), value))
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        if mode == "eager":
            decode.decode_example(serialized)
        else:
            list(tf.data.Dataset.from_tensors(serialized).map(decode.decode_example))
    assert decode.bad_record_in(err.value) == (
        "2008_x'é", f"parts/fine holds the part id {value}, outside the part vocabulary "
                    f"0..24 (the names of its parts/vocabulary, pipelines/schema.py)")


def test_every_id_of_the_vocabulary_passes():
    arrays = ph.synthetic_arrays("ok")
    arrays["parts_fine"][:] = np.arange(arrays["parts_fine"].size).reshape(
        arrays["parts_fine"].shape) % schema.NUM_FINE
    example = decode.decode_example(ph.serialize(arrays))
    assert int(tf.reduce_max(example["parts_fine"])) == schema.NUM_FINE - 1


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_image_bytes_that_are_not_a_jpeg_are_refused(fmt):
    """tf.io.decode_jpeg would decode them; the format (and the converter) take JPEG."""
    import io

    from PIL import Image

    arrays = ph.synthetic_arrays("png_inside")
    buf = io.BytesIO()
    Image.fromarray(arrays["image"]).save(buf, format=fmt)
    serialized = _example_without(ph.serialize(arrays), replace={
        schema.KEY_IMAGE: feature_pb2.Feature(
            bytes_list=feature_pb2.BytesList(value=[buf.getvalue()]))})
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        decode.decode_example(serialized)
    assert decode.bad_record_in(err.value) == (
        "png_inside", "image/encoded is not a JPEG (no start-of-image marker FF D8 FF)")


def test_bad_record_in_ignores_other_errors():
    assert decode.bad_record_in(ValueError("x")) is None
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        tf.debugging.Assert(False, ["something else"])
    assert decode.bad_record_in(err.value) is None


# === Box-only records (the unlabeled pool) ===

def _boxes_only(image_id="b"):
    arrays = ph.synthetic_arrays(image_id, height=8, width=10)
    return arrays, records.make_example(jpeg=ph.jpeg_bytes(arrays["image"]),
                                        image_id=image_id, height=8, width=10,
                                        boxes=arrays["boxes"])


@pytest.mark.parametrize("where", ["eager", "dataset"])
def test_a_box_only_record_decodes_with_empty_maps(where):
    arrays, serialized = _boxes_only()
    out = (decode.decode_example(serialized) if where == "eager"
           else _decode_in_dataset(serialized))
    np.testing.assert_array_equal(out["boxes"].numpy(), arrays["boxes"])
    assert out["image"].shape == (8, 10, 3)
    assert not out["parts_fine"].numpy().any() and not out["person_mask"].numpy().any()
    assert out["parts_fine"].shape == (8, 10)


def test_a_box_only_record_is_refused_where_parts_are_required():
    _, serialized = _boxes_only("2009_x")
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        decode.decode_example(serialized, require_parts=True)
    image_id, problem = decode.bad_record_in(err.value)
    assert image_id == "2009_x" and "carries no part labels" in problem
    # A record that says it carries parts must have them.
    broken = _example_without(serialized, replace={
        schema.KEY_ANNOTATION: feature_pb2.Feature(
            bytes_list=feature_pb2.BytesList(value=[b"parts"]))})
    with pytest.raises(tf.errors.InvalidArgumentError, match="person/mask, parts/fine"):
        decode.decode_example(broken)


def test_a_part_id_is_checked_against_the_records_own_vocabulary():
    arrays = ph.synthetic_arrays("v", height=8, width=8, seed=2)
    small = schema.Vocabulary(["a", "b", "c"])
    fine = np.minimum(arrays["parts_fine"], 3)
    ok = records.make_example(jpeg=ph.jpeg_bytes(arrays["image"]), image_id="v", height=8,
                              width=8, boxes=arrays["boxes"],
                              person_mask=arrays["person_mask"], parts_fine=fine,
                              vocabulary=small)
    np.testing.assert_array_equal(decode.decode_example(ok)["parts_fine"].numpy(), fine)
    fine = fine.copy()
    fine[0, 0] = 4
    bad = records.make_example(jpeg=ph.jpeg_bytes(arrays["image"]), image_id="v", height=8,
                               width=8, boxes=arrays["boxes"],
                               person_mask=arrays["person_mask"], parts_fine=fine,
                               vocabulary=small)
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        decode.decode_example(bad)
    assert "part id 4, outside the part vocabulary 0..3" in decode.bad_record_in(err.value)[1]
