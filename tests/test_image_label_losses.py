"""Tests of coseg_tf.image_label_losses: the GMP and EM-Adapt baselines of Table 2.

Each loss against a value worked out by hand with math.log / math.exp on explicit
numbers; the E-step on a constructed case whose pseudo labels are known; gradients;
empty regions and images without any present part (no NaN / Inf).
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from coseg_tf import image_label_losses as ill

E = math.e


def _f32(x):
    return tf.constant(np.asarray(x, np.float32))


# === GMP ===
def _gmp_case():
    # 2 images x 1 x 3 positions x 3 classes (background, a, b).
    logits = [[[[0.0, 2.0, -1.0],    # in region
                [0.0, -1.0, 1.0],    # in region
                [0.0, 5.0, 5.0]]],   # outside: must not count
              [[[0.0, 0.0, 0.0],
                [0.0, 0.0, 0.0],
                [0.0, 0.0, 0.0]]]]
    region = [[[1, 1, 0]], [[1, 1, 1]]]
    image_labels = [[1, 1, 0], [1, 0, 1]]
    return logits, region, image_labels


def test_gmp_loss_hand_value():
    logits, region, image_labels = _gmp_case()
    loss = ill.gmp_loss(logits=_f32(logits), region=_f32(region),
                        image_labels=_f32(image_labels))
    # Image 1: s_a = max(2, -1) = 2 with y_a = 1 -> log(1 + e^-2); s_b = max(-1, 1) = 1
    # with y_b = 0 -> log(1 + e^1); the outside position (5, 5) is not read.
    first = (math.log(1 + E ** -2) + math.log(1 + E)) / 2
    # Image 2: every score 0 -> log 2 for both classes, present or not.
    second = math.log(2)
    assert loss.numpy() == pytest.approx((first + second) / 2, rel=1e-6)


def test_gmp_loss_skips_images_with_an_empty_region():
    logits, region, image_labels = _gmp_case()
    region[1] = [[0, 0, 0]]
    loss = ill.gmp_loss(logits=_f32(logits), region=_f32(region),
                        image_labels=_f32(image_labels))
    assert loss.numpy() == pytest.approx((math.log(1 + E ** -2) + math.log(1 + E)) / 2,
                                         rel=1e-6)


def test_gmp_gradient_only_at_the_max_positions_inside_the_region():
    logits, region, image_labels = _gmp_case()
    x = tf.Variable(_f32(logits))
    with tf.GradientTape() as tape:
        loss = ill.gmp_loss(logits=x, region=_f32(region), image_labels=_f32(image_labels))
    g = tape.gradient(loss, x).numpy()
    nonzero = {tuple(i) for i in np.argwhere(np.abs(g[0]) > 0)}
    # image 1: class a at its max (position 0), class b at its max (position 1); the
    # background and the outside position get nothing.
    assert nonzero == {(0, 0, 1), (0, 1, 2)}
    # sign: present class a is pushed up, absent class b down
    assert g[0, 0, 0, 1] < 0 < g[0, 0, 1, 2]


def test_gmp_empty_everything_is_finite():
    logits = tf.Variable(tf.zeros([2, 3, 3, 4]))
    with tf.GradientTape() as tape:
        loss = ill.gmp_loss(logits=logits, region=tf.zeros([2, 3, 3]),
                            image_labels=tf.zeros([2, 4]))
    assert loss.numpy() == 0.0
    assert np.all(np.isfinite(tape.gradient(loss, logits).numpy()))


# === EM-Adapt ===
def _em_case():
    """1 x 12 positions, classes (background, a, b, c); 10 in the region, 2 outside.

    Class c has the largest logit everywhere but is absent from the image. Class b is
    below the background everywhere: without its adaptive bias it would get nothing.
    """
    rows = [[1.0, 3.0, 0.0, 5.0],
            [1.0, 2.5, 0.0, 5.0],
            [1.0, 0.0, 0.6, 5.0],
            [1.0, 0.0, 0.5, 5.0]]
    rows += [[2.0 + 0.1 * i, 0.0, -1.0, 5.0] for i in range(6)]
    rows += [[0.0, 9.0, 9.0, 9.0]] * 2          # outside the region
    logits = np.asarray(rows, np.float32)[None, None]
    region = np.asarray([1] * 10 + [0, 0], np.float32)[None, None]
    image_labels = np.asarray([[0, 1, 1, 0]], np.float32)  # background implied
    return logits, region, image_labels


def test_em_adapt_pseudo_labels_on_a_constructed_case():
    logits, region, image_labels = _em_case()
    pseudo = ill.em_adapt_pseudo_labels(logits=logits, region=region,
                                        image_labels=image_labels, fg_share=0.2,
                                        bg_share=0.4).numpy()[0, 0]
    # k_a = k_b = ceil(0.2 * 10) = 2 and k_bg = 4: a takes its two best positions, b
    # its two best although the background beats it there, c (absent) nothing, the
    # rest is background, and outside the region everything stays background.
    np.testing.assert_array_equal(pseudo, [1, 1, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0])
    inside = pseudo[:10]
    for cls, share in ((1, 0.2), (2, 0.2), (0, 0.4)):
        assert np.sum(inside == cls) >= math.ceil(share * 10)
    assert not np.any(pseudo == 3)


def test_em_adapt_without_present_parts_gives_background():
    logits, region, _ = _em_case()
    pseudo = ill.em_adapt_pseudo_labels(logits=logits, region=region,
                                        image_labels=np.zeros((1, 4), np.float32))
    assert np.all(pseudo.numpy() == 0)


def test_em_adapt_empty_region_is_background_and_finite():
    logits = tf.Variable(tf.random.normal([2, 3, 3, 4], seed=0))
    region = tf.zeros([2, 3, 3])
    labels = tf.ones([2, 4])
    pseudo = ill.em_adapt_pseudo_labels(logits=logits, region=region, image_labels=labels)
    assert np.all(pseudo.numpy() == 0)
    with tf.GradientTape() as tape:
        loss = ill.em_adapt_loss(logits=logits, pseudo_labels=pseudo)
    assert np.isfinite(loss.numpy())
    assert np.all(np.isfinite(tape.gradient(loss, logits).numpy()))


def test_em_adapt_loss_hand_value():
    # 1 image, 1 x 2 positions, 2 classes; pseudo labels (0, 1).
    logits = _f32([[[[0.0, 1.0], [2.0, 0.0]]]])
    loss = ill.em_adapt_loss(logits=logits, pseudo_labels=tf.constant([[[0, 1]]]))
    # -log softmax: position 0 class 0: log(1 + e); position 1 class 1: log(e^2 + 1).
    expected = (math.log(1 + E) + math.log(1 + E ** 2)) / 2
    assert loss.numpy() == pytest.approx(expected, rel=1e-6)


def test_em_adapt_e_step_has_no_gradient():
    logits, region, image_labels = _em_case()
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        pseudo = ill.em_adapt_pseudo_labels(logits=x, region=region,
                                            image_labels=image_labels)
        loss = ill.em_adapt_loss(logits=x, pseudo_labels=pseudo)
    g = tape.gradient(loss, x).numpy()
    # the M-step gradient: softmax - one_hot(pseudo), over every position
    p = tf.nn.softmax(logits).numpy()
    expected = (p - np.eye(4, dtype=np.float32)[pseudo.numpy()]) / 12
    np.testing.assert_allclose(g, expected, atol=1e-6)


@pytest.mark.parametrize("name,value", [("fg_share", 0.0), ("bg_share", 1.5)])
def test_em_adapt_rejects_bad_shares(name, value):
    logits, region, image_labels = _em_case()
    with pytest.raises(ValueError, match=name):
        ill.em_adapt_pseudo_labels(logits=logits, region=region, image_labels=image_labels,
                                   **{name: value})


def test_losses_in_tf_function_with_unknown_batch_match_eager():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 5, 4)).astype(np.float32)
    region = (rng.uniform(size=(3, 5, 5)) > 0.4).astype(np.float32)
    labels = np.concatenate([np.ones((3, 1)), rng.integers(0, 2, (3, 3))], 1).astype(np.float32)

    def both(lg, rg, lb):
        pseudo = ill.em_adapt_pseudo_labels(logits=lg, region=rg, image_labels=lb)
        return (ill.gmp_loss(logits=lg, region=rg, image_labels=lb),
                ill.em_adapt_loss(logits=lg, pseudo_labels=pseudo), pseudo)

    graph = tf.function(both, input_signature=[
        tf.TensorSpec([None, None, None, 4]), tf.TensorSpec([None, None, None]),
        tf.TensorSpec([None, 4])])
    for a, b in zip(both(logits, region, labels), graph(logits, region, labels)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_shape_errors_name_the_input():
    with pytest.raises(ValueError, match="image_labels have 3 classes"):
        ill.gmp_loss(logits=tf.zeros([1, 2, 2, 4]), region=tf.ones([1, 2, 2]),
                     image_labels=tf.ones([1, 3]))
    with pytest.raises(ValueError, match="image_labels must be"):
        ill.em_adapt_pseudo_labels(logits=tf.zeros([1, 2, 2, 4]), region=tf.ones([1, 2, 2]),
                                   image_labels=tf.ones([4]))
