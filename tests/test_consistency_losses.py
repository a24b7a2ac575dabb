"""Tests of coseg_tf.consistency_losses: pseudo-labels, the confidence mask, the loss.

Values worked out by hand on tiny inputs; empty cases (no confident position, no
region) give 0 and finite gradients; tf.function with an unknown batch size.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from coseg_tf import consistency_losses as cl

E = math.e


def _f32(x):
    return tf.constant(np.asarray(x, np.float32))


def test_unimatch_threshold_is_the_default():
    # UniMatch (V1 and V2) configs: conf_thresh 0.95.
    assert cl.DEFAULT_CONFIDENCE_THRESHOLD == 0.95


def test_confidence_mask_on_a_constructed_prediction():
    # One image, 1 x 4 positions, 3 classes; region on positions 0..2.
    #   0: logits (0, 5, 0): p_1 = e^5 / (e^5 + 2) = .9867 -> class 1, confident
    #   1: logits (0, 0, 1): p_2 = e / (e + 2) = .5761     -> class 2, not confident
    #   2: logits (3, 0, 0): p_0 = e^3 / (e^3 + 2) = .9094 -> background, not confident
    #   3: logits (0, 9, 0), OUTSIDE the region            -> background (the box is
    #      known), confidence 1, confident
    logits = _f32([[[[0, 5, 0], [0, 0, 1], [3, 0, 0], [0, 9, 0]]]])
    region = _f32([[[1, 1, 1, 0]]])
    labels, confidence, confident = cl.pseudo_labels(logits=logits, region=region,
                                                     threshold=0.95)
    assert labels.numpy().tolist() == [[[1, 2, 0, 0]]]
    np.testing.assert_allclose(confidence.numpy()[0, 0],
                               [E**5 / (E**5 + 2), E / (E + 2), E**3 / (E**3 + 2), 1.0],
                               rtol=1e-6)
    assert confident.numpy().tolist() == [[[1, 0, 0, 1]]]
    # The threshold is inclusive: a position whose confidence equals it is kept.
    at = float(confidence[0, 0, 2])
    _, _, kept = cl.pseudo_labels(logits=logits, region=region, threshold=at)
    assert kept.numpy().tolist() == [[[1, 0, 1, 1]]]
    # The share of the region's confident positions (the diagnostic): 1 of 3.
    share = cl.confident_share(confident=confident, region=region)
    assert share.numpy() == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="threshold"):
        cl.pseudo_labels(logits=logits, region=region, threshold=1.5)


def _loss_case():
    """Three images of 1 x 3 positions, 3 classes.

    Image 0: region (1, 1, 0); pseudo-labels (1, 0, 0), confident (1, 0, 1); logits
      (0, 1, 0), (2, 0, 0), (0, 0, 5): only position 0 counts, normalised by |region|
      = 2: (log(2 + e) - 1) / 2.
    Image 1: no region: left out of the mean.
    Image 2: region everywhere, all confident, logits 0, pseudo-labels (0, 1, 2): log 3.
    Loss: the mean of images 0 and 2.
    """
    logits = np.zeros((3, 1, 3, 3), np.float32)
    logits[0, 0] = [[0, 1, 0], [2, 0, 0], [0, 0, 5]]
    logits[1, 0] = [[9, 0, 0], [0, 9, 0], [0, 0, 9]]
    return dict(logits=_f32(logits),
                pseudo_labels=tf.constant([[[1, 0, 0]], [[0, 0, 0]], [[0, 1, 2]]]),
                confident=_f32([[[1, 0, 1]], [[1, 1, 1]], [[1, 1, 1]]]),
                region=_f32([[[1, 1, 0]], [[0, 0, 0]], [[1, 1, 1]]]))


def test_consistency_loss_hand_value():
    loss = cl.consistency_loss(**_loss_case())
    expected = ((math.log(2 + E) - 1) / 2 + math.log(3)) / 2
    assert loss.numpy() == pytest.approx(expected, rel=1e-6)


def test_gradient_only_through_the_logits_at_confident_region_positions():
    case = _loss_case()
    with tf.GradientTape() as tape:
        tape.watch(case["logits"])
        loss = cl.consistency_loss(**case)
    grad = tape.gradient(loss, case["logits"]).numpy()
    moved = np.abs(grad).sum(-1) > 0
    assert moved.tolist() == [[[True, False, False]], [[False, False, False]],
                              [[True, True, True]]]
    # d/d logits of CE(., 1) / 2 / 2 images at image 0, position 0
    p = np.array([1, E, 1]) / (2 + E)
    np.testing.assert_allclose(grad[0, 0, 0], (p - [0, 1, 0]) / 4, rtol=1e-5)


@pytest.mark.parametrize("empty", ["no_confident_position", "no_region"])
def test_no_nan_when_nothing_passes(empty):
    # Teacher logits of a fresh network: near uniform, nothing reaches 0.95.
    rng = np.random.default_rng(0)
    teacher = _f32(rng.normal(scale=0.01, size=(2, 3, 3, 4)))
    region = _f32(np.ones((2, 3, 3)) if empty == "no_confident_position"
                  else np.zeros((2, 3, 3)))
    labels, _, confident = cl.pseudo_labels(logits=teacher, region=region)
    if empty == "no_confident_position":
        assert confident.numpy().sum() == 0
    student = _f32(rng.normal(size=(2, 3, 3, 4)))
    with tf.GradientTape() as tape:
        tape.watch(student)
        loss = cl.consistency_loss(logits=student, pseudo_labels=labels,
                                   confident=confident, region=region)
    grad = tape.gradient(loss, student)
    assert loss.numpy() == 0.0
    assert np.all(np.isfinite(grad.numpy()))
    share = cl.confident_share(confident=confident, region=region).numpy()
    if empty == "no_region":
        assert np.isnan(share)  # undefined, left out of the tracker's mean
    else:
        assert share == 0.0


def test_consistency_loss_in_tf_function_with_unknown_batch():
    case = _loss_case()
    spec = {"logits": tf.TensorSpec([None, 1, 3, 3], tf.float32),
            "pseudo_labels": tf.TensorSpec([None, 1, 3], tf.int32),
            "confident": tf.TensorSpec([None, 1, 3], tf.float32),
            "region": tf.TensorSpec([None, 1, 3], tf.float32)}

    @tf.function(input_signature=[spec])
    def fn(inputs):
        return cl.consistency_loss(**inputs)

    assert fn(case).numpy() == pytest.approx(cl.consistency_loss(**case).numpy())
    one = {k: v[2:] for k, v in case.items()}
    assert fn(one).numpy() == pytest.approx(math.log(3), rel=1e-6)
    assert fn.experimental_get_tracing_count() == 1


def test_consistency_loss_refuses_mismatched_shapes():
    case = _loss_case()
    case["pseudo_labels"] = tf.zeros([3, 1, 4], tf.int32)
    with pytest.raises(ValueError, match="pseudo_labels"):
        cl.consistency_loss(**case)
