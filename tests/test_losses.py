"""Tests of coseg_tf.losses (DESIGN.md §3).

Each loss is checked against a value worked out by hand on explicit numbers; the
discrete steps (target choice, class points, mining) on cases built so that the answer
is obvious; then gradients. A plain NumPy loop implementation cross-checks the
vectorized coseg loss on random inputs. The empty cases (no NaN / Inf) and
tf.function with unknown batch sizes are tested through L_all, on the objective that
sums it (tests/test_objectives.py).
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from coseg_tf import losses

E = math.e
IGNORE = 255
# Logits that make a pixel confidently background: a loss that wrongly reads such a
# pixel (outside a region, ignored, ...) changes by a lot.
BG = [10.0, -10.0, -10.0]


def _f32(x):
    return tf.constant(np.asarray(x, np.float32))


def _i32(x):
    return tf.constant(np.asarray(x, np.int32))


# === downsample_labels ===
def test_downsample_labels_takes_the_stride_8_grid():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=(2, 321, 321)).astype(np.uint8)
    out = losses.downsample_labels(labels, (41, 41))
    assert out.dtype == tf.int32 and out.shape == (2, 41, 41)
    np.testing.assert_array_equal(out.numpy(), labels[:, ::8, ::8])
    # [B, H, W, 1] and a tensor size (what the trainer passes) give the same.
    out4 = losses.downsample_labels(labels=labels[..., None], size=tf.constant([41, 41]))
    np.testing.assert_array_equal(out4.numpy(), labels[:, ::8, ::8])


@pytest.mark.parametrize("height,width,h,w", [(320, 328, 40, 41), (17, 9, 3, 2)])
def test_downsample_labels_cell_k_reads_pixel_8k(height, width, h, w):
    rows = np.arange(height)[:, None] * 1000 + np.arange(width)[None, :]
    out = losses.downsample_labels(rows[None], (h, w)).numpy()[0]
    expected = np.array([[8 * k * 1000 + 8 * l for l in range(w)] for k in range(h)])
    np.testing.assert_array_equal(out, expected)


def test_downsample_labels_in_tf_function_with_unknown_shapes():
    fn = tf.function(lambda labels, size: losses.downsample_labels(labels, size),
                     input_signature=[tf.TensorSpec([None, None, None], tf.int32),
                                      tf.TensorSpec([2], tf.int32)])
    labels = np.arange(3 * 33 * 25, dtype=np.int32).reshape(3, 33, 25)
    np.testing.assert_array_equal(fn(labels, tf.constant([5, 4])).numpy(),
                                  labels[:, ::8, ::8][:, :5, :4])
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels too small"):
        fn(labels, tf.constant([6, 4]))


def test_downsample_labels_rejects_bad_input():
    with pytest.raises(ValueError, match="fewer than the requested size"):
        losses.downsample_labels(np.zeros((1, 16, 16), np.int32), (3, 3))
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        losses.downsample_labels(np.zeros((16, 16), np.int32), (2, 2))


# === L_humanparts ===
def test_humanparts_loss_hand_value():
    labels = [[[0, 1], [1, IGNORE]],
              [[2, 2], [2, 0]],
              [[IGNORE, IGNORE], [IGNORE, IGNORE]]]
    logits = [[[[2, 0, 0], [0, 1, 0]], [[0, 0, 0], [5, 5, 5]]],
              [[[0, 0, 3], [0, 0, 0]], [[0, 0, 0], [1, 1, 1]]],
              [[BG, BG], [BG, BG]]]
    # Image 0: background at one pixel; class 1 at two pixels; the ignored pixel unread.
    img0_bg = 2 - math.log(E**2 + 2)
    img0_c1 = ((1 - math.log(2 + E)) + math.log(1 / 3)) / 2
    img0 = -(img0_bg + img0_c1) / 2
    # Image 1: class 2 at three pixels, background at one.
    img1_c2 = ((3 - math.log(2 + E**3)) + math.log(1 / 3) + math.log(1 / 3)) / 3
    img1_bg = math.log(1 / 3)
    img1 = -(img1_c2 + img1_bg) / 2
    # Image 2 has no labeled pixel: left out of the mean.
    expected = (img0 + img1) / 2
    value = losses.humanparts_loss(logits=_f32(logits), labels=_i32(labels), num_classes=3)
    assert value.numpy() == pytest.approx(expected, rel=1e-6)


def test_humanparts_loss_rejects_bad_labels_and_shapes():
    logits = _f32(np.zeros((1, 2, 2, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels must lie in"):
        losses.humanparts_loss(logits=logits, labels=_i32([[[0, 1], [3, 0]]]), num_classes=3)
    with pytest.raises(ValueError, match="num_classes=4"):
        losses.humanparts_loss(logits=logits, labels=_i32([[[0, 1], [2, 0]]]), num_classes=4)
    with pytest.raises(ValueError, match="labels has spatial size"):
        losses.humanparts_loss(logits=logits, labels=_i32(np.zeros((1, 3, 3))),
                               num_classes=3)


# === L_human ===
def test_human_loss_hand_value():
    region = [[[1, 1], [0, 0]],
              [[0, 0], [0, 0]],
              [[0, 0], [0, 1]]]
    logits = [[[[0, 0, 0], [1, 0, 2]], [BG, BG]],
              [[BG, BG], [BG, BG]],
              [[BG, BG], [BG, [0, 1, 1]]]]
    # log(1 - p_0) = log((sum_{c>=1} e^{l_c}) / sum_c e^{l_c}) at each region pixel.
    img0 = -(math.log(2 / 3) + math.log((1 + E**2) / (E + 1 + E**2))) / 2
    img2 = -math.log(2 * E / (1 + 2 * E))
    expected = (img0 + img2) / 2  # image 1 has an empty region: left out
    value = losses.human_loss(logits=_f32(logits), region=_f32(region))
    assert value.numpy() == pytest.approx(expected, rel=1e-6)
    value4 = losses.human_loss(logits=_f32(logits), region=_f32(region)[..., None])
    assert value4.numpy() == pytest.approx(expected, rel=1e-6)


def test_human_loss_is_stable_for_confident_background():
    # p_0 = 1 - O(e^-200): 1 - softmax would round to 0 and log(0) = -inf.
    logits = _f32([[[[100.0, -100.0, -100.0]]]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = losses.human_loss(logits=logits, region=_f32([[[1.0]]]))
    assert value.numpy() == pytest.approx(200 - math.log(2), rel=1e-6)
    grad = tape.gradient(value, logits).numpy()
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[0, 0, 0], [1.0, -0.5, -0.5], atol=1e-6)


# === L_coseg: a hand-built case ===
def _hand_case():
    """One labeled and two unlabeled 3 x 3 maps, 2-D features, 3 classes.

    Labeled image (flat positions 0..8, row-major):
      labels   1 1 0      class 1: n = 4 -> |S_1| = 2
               1 2 0      class 2: n = 3 -> |S_2| = 1
               1 2 2
      logits 0 except position 3 (a class-1 pixel, p_1 = e^3/(e^3+2) > 1/3) and
      position 8 (a class-2 pixel, p_2 the largest among class-2 pixels): so
      r_1 = m^f(3) = (1, 0) and r_2 = m^f(8) = (0, 1). GAP g^f = (1/9, 1/9).
    Unlabeled image 0: features (5, 5) everywhere -> far (the most DISsimilar image).
    Unlabeled image 1 (the target): region = rows 0 and 1 (positions 0..5), features
      0 (.9, 0)  1 (.8, 0)  2 (0, .9)  3 (0, .5)  4 (.5, .5)  5 (.3, 0)
      6 (1, 0)   7 (0, 1)   8 (0, 0)      <- outside the region; 6 and 7 equal r_1, r_2
    Squared distances inside the region: to r_1: .01 .04 1.81 1.25 .5 .49 -> S_1 = {0, 1};
    to r_2: 1.81 1.64 .01 .25 .5 1.09 -> S_2 = {2}.
    """
    labels = [[[1, 1, 0], [1, 2, 0], [1, 2, 2]]]
    logits_f = np.zeros((1, 3, 3, 3), np.float32)
    logits_f[0, 1, 0] = [0, 3, 0]
    logits_f[0, 2, 2] = [0, 0, 3]
    feats_f = np.zeros((1, 3, 3, 2), np.float32)
    feats_f[0, 1, 0] = [1, 0]
    feats_f[0, 2, 2] = [0, 1]
    feats_u = np.zeros((2, 3, 3, 2), np.float32)
    feats_u[0] = 5.0
    feats_u[1] = np.reshape([[.9, 0], [.8, 0], [0, .9], [0, .5], [.5, .5], [.3, 0],
                             [1, 0], [0, 1], [0, 0]], (3, 3, 2))
    region_u = np.zeros((2, 3, 3), np.float32)
    region_u[0] = 1.0
    region_u[1, :2] = 1.0
    logits_u = np.zeros((2, 3, 3, 3), np.float32)
    logits_u[0] = [3.0, -1.0, 2.0]
    flat = logits_u[1].reshape(9, 3)
    flat[0] = [0, 1, 0]
    flat[1] = [1, 0, 0]
    flat[2] = [0, 0, 2]
    return dict(logits_labeled=_f32(logits_f), labels=_i32(labels),
                features_labeled=_f32(feats_f), logits_unlabeled=_f32(logits_u),
                features_unlabeled=_f32(feats_u), region_unlabeled=_f32(region_u),
                num_classes=3)


def test_coseg_loss_hand_value():
    case = _hand_case()
    loss, aux = losses.coseg_loss(**case)
    # Class 1 at target positions 0 (logits 0,1,0) and 1 (logits 1,0,0); class 2 at
    # position 2 (logits 0,0,2).
    class1 = ((1 - math.log(2 + E)) + (0 - math.log(E + 2))) / 2
    class2 = 2 - math.log(2 + E**2)
    expected = -(class1 + class2) / 2
    assert loss.numpy() == pytest.approx(expected, rel=1e-6)
    assert aux["targets"].numpy().tolist() == [1]
    assert aux["num_mined"].numpy().tolist() == [[0, 2, 1]]
    assert aux["points"].numpy()[0, 1:].tolist() == [3, 8]
    mined = aux["mined"].numpy()
    assert mined.shape == (1, 3, 9)
    assert np.flatnonzero(mined[0, 0]).tolist() == []
    assert np.flatnonzero(mined[0, 1]).tolist() == [0, 1]
    assert np.flatnonzero(mined[0, 2]).tolist() == [2]


def test_coseg_loss_valid_unlabeled_drops_positions_after_mining():
    # The hand case mines S_1 = {0, 1}, S_2 = {2} in target 1; position 1 marked as not
    # shown by the logits: S_1 = {0}, the mining itself unchanged.
    case = _hand_case()
    valid = np.ones((2, 3, 3), np.float32)
    valid[1, 0, 1] = 0.0
    valid[0] = 0.0  # image 0 is not a target: no effect
    loss, aux = losses.coseg_loss(**case, valid_unlabeled=_f32(valid))
    assert aux["num_mined"].numpy().tolist() == [[0, 1, 1]]
    expected = -((1 - math.log(2 + E)) + (2 - math.log(2 + E**2))) / 2
    assert loss.numpy() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="valid_unlabeled"):
        losses.coseg_loss(**case, valid_unlabeled=_f32(np.ones((2, 4, 4))))


# === The discrete steps ===
def test_choose_targets_takes_the_most_similar_gap_over_all_positions():
    # Labeled 0: (1, 0) everywhere -> g = (1, 0).  Labeled 1: (0, 2) everywhere.
    feats_f = np.zeros((2, 2, 2, 2), np.float32)
    feats_f[0] = [1, 0]
    feats_f[1] = [0, 2]
    # Unlabeled 0: (1, 0) at ONE position, zeros (masked out) elsewhere: g = (.25, 0);
    #   a mean over the non-zero region only would make it an exact match of labeled 0.
    # Unlabeled 1: (.8, 0) everywhere: g = (.8, 0) -> nearest to labeled 0.
    # Unlabeled 2: (0, 1.9) everywhere -> nearest to labeled 1.
    feats_u = np.zeros((3, 2, 2, 2), np.float32)
    feats_u[0, 0, 0] = [1, 0]
    feats_u[1] = [.8, 0]
    feats_u[2] = [0, 1.9]
    targets = losses.choose_targets(features_labeled=_f32(feats_f),
                                    features_unlabeled=_f32(feats_u))
    assert targets.dtype == tf.int32
    assert targets.numpy().tolist() == [1, 2]


def test_choose_targets_needs_an_unlabeled_image():
    with pytest.raises(tf.errors.InvalidArgumentError, match="B_u >= 1"):
        losses.choose_targets(features_labeled=_f32(np.zeros((1, 2, 2, 2))),
                              features_unlabeled=_f32(np.zeros((0, 2, 2, 2))))


def test_class_points_argmax_over_the_class_pixels_only():
    labels = [[[1, 1, 0], [2, IGNORE, 1]]]
    probs = np.full((1, 2, 3, 4), 0.25, np.float32)
    probs[0, 0, 1, 1] = 0.6   # the best class-1 pixel (flat 1)
    probs[0, 1, 0, 1] = 0.9   # higher p_1, but labeled 2: not a class-1 pixel
    probs[0, 1, 1, 1] = 0.99  # higher p_1, but ignored
    probs[0, 1, 2, 1] = 0.5
    index, present = losses.class_points(probs_labeled=_f32(probs), labels=_i32(labels),
                                         num_classes=4)
    # background (present, but never a class point) and class 3 (absent) are not present
    assert present.numpy().tolist() == [[False, True, True, False]]
    assert index.numpy()[0, 1] == 1
    assert index.numpy()[0, 2] == 3  # the only class-2 pixel


def _line_case(region_positions, n_class1):
    """One labeled, one unlabeled 3 x 3 map; r_1 = (0, 0); target distances d known.

    The target's feature at flat position k is (d[k], 0) with
      d = .5 .2 .9 .1 .7 .3 .8 .6 .4   (nearest first: 3 1 5 8 0 7 4 6 2),
    so the nearest positions to r_1 are read off d.
    """
    labels = np.zeros(9, np.int32)
    labels[:n_class1] = 1
    logits_f = np.zeros((1, 3, 3, 3), np.float32)
    feats_f = np.full((1, 3, 3, 2), 7.0, np.float32)
    feats_f[0, 0, 0] = [0, 0]  # r_1: position 0 is labeled 1 and the most confident
    logits_f[0, 0, 0] = [0, 2, 0]
    d = [.5, .2, .9, .1, .7, .3, .8, .6, .4]
    feats_u = np.zeros((1, 9, 2), np.float32)
    feats_u[0, :, 0] = d
    region = np.zeros((1, 9), np.float32)
    region[0, region_positions] = 1.0
    return dict(probs_labeled=tf.nn.softmax(_f32(logits_f)),
                labels=_i32(labels.reshape(1, 3, 3)),
                features_labeled=_f32(feats_f),
                features_unlabeled=_f32(feats_u.reshape(1, 3, 3, 2)),
                region_unlabeled=_f32(region.reshape(1, 3, 3)), num_classes=3)


@pytest.mark.parametrize("region_positions,n_class1,expected", [
    # Whole region: floor(7 / 2) = 3 nearest.
    (list(range(9)), 7, [1, 3, 5]),
    # floor(5 / 2) = 2 nearest.
    (list(range(9)), 5, [1, 3]),
    # Region {0, 2, 4, 6, 8} (5 positions): floor(min(7, 5) / 2) = 2, and the nearer
    # positions 3, 1, 5 outside the region are never mined.
    ([0, 2, 4, 6, 8], 7, [0, 8]),
    # Region of 3 positions caps n_1 = 7 to 3: floor(3 / 2) = 1.
    ([0, 4, 8], 7, [8]),
    # One position: floor(min(7, 1) / 2) = 0, nothing mined.
    ([4], 7, []),
    # Empty region: nothing mined.
    ([], 7, []),
])
def test_mine_positions_count_cap_and_region(region_positions, n_class1, expected):
    mined, targets = losses.mine_positions(**_line_case(region_positions, n_class1))
    assert targets.numpy().tolist() == [0]
    mined = mined.numpy()
    assert mined.shape == (1, 3, 9)
    assert np.flatnonzero(mined[0, 1]).tolist() == expected
    # background and the absent class 2 never mine anything
    assert not mined[0, 0].any() and not mined[0, 2].any()
    outside = np.setdiff1d(np.arange(9), region_positions)
    assert not mined[0, :, outside].any()


# === A NumPy loop reference on random inputs ===
def _reference_coseg(logits_f, labels, feats_f, logits_u, feats_u, region, num_classes):
    """DESIGN §3 written with loops, independently of the vectorized code."""
    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    b_f, h, w, _ = logits_f.shape
    per_image, targets, mined = [], [], np.zeros((b_f, num_classes, h * w))
    for i in range(b_f):
        g = feats_f[i].mean((0, 1))
        dists = [np.linalg.norm(g - feats_u[j].mean((0, 1))) for j in range(len(feats_u))]
        t = int(np.argmin(dists))
        targets.append(t)
        probs = np.exp(log_softmax(logits_f[i])).reshape(-1, num_classes)
        z = labels[i].reshape(-1)
        m_f = feats_f[i].reshape(h * w, -1)
        m_t = feats_u[t].reshape(h * w, -1)
        inside = [k for k in range(h * w) if region[t].reshape(-1)[k] > 0.5]
        log_p_t = log_softmax(logits_u[t]).reshape(h * w, num_classes)
        class_terms = []
        for c in range(1, num_classes):
            pixels = [k for k in range(h * w) if z[k] == c]
            if not pixels:
                continue
            point = max(pixels, key=lambda k: probs[k, c])
            r = m_f[point]
            n_c = min(len(pixels), len(inside))
            nearest = sorted(inside, key=lambda k: np.linalg.norm(r - m_t[k]))[:n_c // 2]
            if not nearest:
                continue
            mined[i, c, nearest] = 1
            class_terms.append(np.mean([log_p_t[k, c] for k in nearest]))
        if class_terms:
            per_image.append(-np.mean(class_terms))
    return (np.mean(per_image) if per_image else 0.0), targets, mined


def _random_case(seed, b_f=2, b_u=3, h=4, w=5, c=4, f=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=(b_f, h, w))
    labels[rng.random((b_f, h, w)) < 0.15] = IGNORE
    region = (rng.random((b_u, h, w)) < 0.6).astype(np.float32)
    region[-1] = 0.0  # one unlabeled image without a human region
    feats_u = rng.normal(size=(b_u, h, w, f)).astype(np.float32) * region[..., None]
    return dict(logits_labeled=rng.normal(size=(b_f, h, w, c)).astype(np.float32),
                labels=labels.astype(np.int32),
                features_labeled=rng.normal(size=(b_f, h, w, f)).astype(np.float32),
                logits_unlabeled=rng.normal(size=(b_u, h, w, c)).astype(np.float32),
                features_unlabeled=feats_u, region_unlabeled=region, num_classes=c)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coseg_loss_matches_a_loop_reference(seed):
    case = _random_case(seed)
    loss, aux = losses.coseg_loss(**case)
    ref_loss, ref_targets, ref_mined = _reference_coseg(
        case["logits_labeled"], case["labels"], case["features_labeled"],
        case["logits_unlabeled"], case["features_unlabeled"], case["region_unlabeled"],
        case["num_classes"])
    assert aux["targets"].numpy().tolist() == ref_targets
    np.testing.assert_array_equal(aux["mined"].numpy(), ref_mined)
    assert loss.numpy() == pytest.approx(ref_loss, rel=1e-5)


# === Gradients ===
def _gradients(fn, case, keys):
    tensors = {k: case[k] for k in keys}
    with tf.GradientTape() as tape:
        tape.watch(list(tensors.values()))
        value = fn(dict(case, **tensors))
    grads = tape.gradient(value, tensors,
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return value, {k: tf.convert_to_tensor(g).numpy() for k, g in grads.items()}


FLOAT_INPUTS = ("logits_labeled", "features_labeled", "logits_unlabeled",
                "features_unlabeled")


def test_coseg_gradient_only_through_log_p_at_mined_positions():
    case = _hand_case()
    _, grads = _gradients(lambda c: losses.coseg_loss(**c)[0], case, FLOAT_INPUTS)
    # The mining reads these, the loss does not: no gradient.
    for key in ("logits_labeled", "features_labeled", "features_unlabeled"):
        assert not grads[key].any(), key
    # [B_u, h*w] gradient magnitude per unlabeled position
    magnitude = np.abs(grads["logits_unlabeled"]).sum(-1).reshape(2, 9)
    assert not magnitude[0].any()  # image 0 is no one's target
    assert np.flatnonzero(magnitude[1]).tolist() == [0, 1, 2]  # S_1 | S_2
    # d(-log p_1)/d logits = (p - onehot_1) / (|C_i| |S_1|) at position 0, logits (0,1,0)
    p = np.array([1, E, 1]) / (2 + E)
    np.testing.assert_allclose(grads["logits_unlabeled"][1, 0, 0],
                               (p - [0, 1, 0]) / 4, rtol=1e-5)


def test_human_and_humanparts_gradients_stay_in_their_pixels():
    case = _hand_case()
    _, g = _gradients(lambda c: losses.human_loss(logits=c["logits_unlabeled"],
                                                  region=c["region_unlabeled"]),
                      case, ["logits_unlabeled"])
    magnitude = np.abs(g["logits_unlabeled"]).sum(-1)
    np.testing.assert_array_equal(magnitude > 0, case["region_unlabeled"].numpy() > 0.5)
    labels = np.array(case["labels"].numpy())
    labels[0, 0, 0] = IGNORE
    case["labels"] = _i32(labels)
    _, g = _gradients(lambda c: losses.humanparts_loss(
        logits=c["logits_labeled"], labels=c["labels"], num_classes=3),
        case, ["logits_labeled"])
    magnitude = np.abs(g["logits_labeled"]).sum(-1)
    np.testing.assert_array_equal(magnitude > 0, labels != IGNORE)


# === Empty cases: zero, never NaN or Inf ===
def _variant(name):
    case = _hand_case()
    if name == "class_absent":  # class 2 absent from the labeled image
        case["labels"] = _i32([[[1, 1, 0], [1, 0, 0], [1, 0, 0]]])
    elif name == "empty_regions":  # no unlabeled image has a human region
        case["region_unlabeled"] = tf.zeros_like(case["region_unlabeled"])
    elif name == "all_ignored":  # the labeled image has no labeled pixel
        case["labels"] = _i32(np.full((1, 3, 3), IGNORE))
    elif name == "no_labeled_image":  # a batch without labeled images at all
        for key in ("logits_labeled", "features_labeled"):
            case[key] = case[key][:0]
        case["labels"] = case["labels"][:0]
    elif name == "one_pixel_class":  # n_2 = 1: S_2 empty, class 2 not in C_i
        case["labels"] = _i32([[[1, 1, 0], [1, 2, 0], [1, 0, 0]]])
    elif name == "one_pixel_classes":  # n_c = 1 everywhere: floor(1/2) = 0, S_c empty
        case["labels"] = _i32([[[1, 0, 0], [0, 2, 0], [0, 0, 0]]])
    return case


# The empty cases through L_all, and L_all in tf.function with an unknown batch size,
# are tested on the objective that sums it (tests/test_objectives.py); `_variant`
# builds the cases for both.


def test_mining_is_exact_when_features_encode_the_class():
    """Features that are the one-hot of the true class: every mined position is of the
    class it was mined for (what the mining-precision metric reads as 100 %). Low
    precision in training is then the representation's, not the mining's."""
    rng = np.random.default_rng(7)
    num_classes, h, w = 4, 6, 6
    labels_u = rng.integers(0, num_classes, (3, h, w))
    region_u = (rng.uniform(size=(3, h, w)) > 0.2).astype(np.float32)
    labels_u[region_u == 0] = 0
    # the labeled image is unlabeled image 1 with another layout of the same classes
    labels_f = labels_u[1:2].copy()
    onehot = lambda lab, reg: (np.eye(num_classes, dtype=np.float32)[lab]  # noqa: E731
                               * reg[..., None])
    region_f = (labels_f > 0).astype(np.float32)
    logits_f = 3 * np.eye(num_classes, dtype=np.float32)[labels_f]
    _, aux = losses.coseg_loss(
        logits_labeled=_f32(logits_f), labels=_i32(labels_f),
        features_labeled=_f32(onehot(labels_f, np.maximum(region_f, 1))),
        logits_unlabeled=_f32(rng.normal(size=(3, h, w, num_classes))),
        features_unlabeled=_f32(onehot(labels_u, region_u)),
        region_unlabeled=_f32(region_u), num_classes=num_classes)
    target = int(aux["targets"][0])
    mined = aux["mined"].numpy()[0]  # [C, h*w]
    hidden = labels_u[target].reshape(-1)
    assert mined[1:].sum() > 0
    for c in range(1, num_classes):
        assert np.all(hidden[mined[c] > 0] == c), c
