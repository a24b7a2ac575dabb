"""The mining options of L_coseg beside the paper's (coseg_tf.losses.MiningOptions).

Each option is checked on a tiny case built so that it mines other positions than the
paper's reading, with the expected positions and loss worked out by hand.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from coseg_tf import losses

E = math.e


def _f32(x):
    return tf.constant(np.asarray(x, np.float32))


def _i32(x):
    return tf.constant(np.asarray(x, np.int32))


def _case(feats_f, labels, conf, feats_u, logits_u=None, region=None):
    """1 x w maps: labeled features [w, F], labels [w], the most confident class pixel
    `conf`; unlabeled features [B_u, w', F]. Three classes (0 background)."""
    feats_f = np.asarray(feats_f, np.float32)[None, None]
    w = feats_f.shape[2]
    logits_f = np.zeros((1, 1, w, 3), np.float32)
    for pos, c in conf:
        logits_f[0, 0, pos, c] = 3.0
    feats_u = np.asarray(feats_u, np.float32)[:, None]
    b_u, _, w_u, _ = feats_u.shape
    if logits_u is None:
        logits_u = np.zeros((b_u, 1, w_u, 3), np.float32)
    if region is None:
        region = np.ones((b_u, 1, w_u), np.float32)
    return dict(logits_labeled=_f32(logits_f), labels=_i32(np.asarray(labels)[None, None]),
                features_labeled=_f32(feats_f),
                logits_unlabeled=_f32(np.asarray(logits_u, np.float32)),
                features_unlabeled=_f32(feats_u), region_unlabeled=_f32(region),
                num_classes=3)


def _mined(case, **options):
    _, aux = losses.coseg_loss(**case, options=losses.MiningOptions(**options))
    return [np.flatnonzero(row).tolist() for row in aux["mined"].numpy()[:, 1]]


def test_prototype_is_the_mean_feature_of_the_class_pixels():
    # Class 1 on labeled positions 0, 1 with features (2, 0) and (0, 2); position 0 is
    # the most confident: argmax r_1 = (2, 0), prototype r_1 = (1, 1). n_1 = 2 -> one
    # position is mined in the target, whose features are
    #   (2, 0)  (1, 1)  (0, 2)  (5, 5)
    case = _case([[2, 0], [0, 2], [0, 0], [0, 0]], [1, 1, 0, 0], [(0, 1)],
                 [[[2, 0], [1, 1], [0, 2], [5, 5]]])
    assert _mined(case) == [[0]]                       # the paper: nearest to (2, 0)
    assert _mined(case, point="prototype") == [[1]]    # nearest to (1, 1)


def test_cosine_distance_ignores_the_feature_norm():
    # r_1 = (1, 0). Target (3, 0): Euclidean 2, cosine distance 0. Target (1, .5):
    # Euclidean .5, cosine distance 1 - 1/sqrt(1.25) = .106.
    case = _case([[1, 0], [1, 0]], [1, 1], [(0, 1)], [[[3, 0], [1, .5]]])
    assert _mined(case) == [[1]]
    assert _mined(case, distance="cosine") == [[0]]


def test_agreement_keeps_the_positions_predicted_as_their_class_and_renormalizes():
    # r_1 = (0, 0); target features (d, 0) with d = .5 .2 .9 .1 .7 .3: n_1 = 6 -> the 3
    # nearest, positions 3, 1, 5. The target predicts class 1 at 1 and 5, the background
    # at 3, so agreement keeps {1, 5}.
    d = [.5, .2, .9, .1, .7, .3]
    logits_u = np.zeros((1, 1, 6, 3), np.float32)
    logits_u[0, 0, :, 0] = 1.0          # background everywhere ...
    logits_u[0, 0, 1] = [0, 2, 0]       # ... but class 1 at positions 1 and 5
    logits_u[0, 0, 5] = [0, 1, 0]
    case = _case([[0, 0]] + [[7, 7]] * 5, [1] * 6, [(0, 1)], [[[v, 0] for v in d]],
                 logits_u=logits_u)
    assert _mined(case) == [[1, 3, 5]]
    assert _mined(case, agreement=True) == [[1, 5]]
    loss, aux = losses.coseg_loss(**case, options=losses.MiningOptions(agreement=True))
    # -1/|S_1| sum log p_1 over {1, 5}: log p_1(1) = 2 - log(2 + e^2);
    # log p_1(5) = 1 - log(2 + e) (logits 0, 1, 0).
    expected = -((2 - math.log(2 + E**2)) + (1 - math.log(2 + E))) / 2
    assert loss.numpy() == pytest.approx(expected, rel=1e-6)
    assert aux["num_mined"].numpy()[0].tolist() == [0, 2, 0]


def test_agreement_reads_the_mining_logits_when_given():
    # The same case; the mining pass predicts class 1 at position 3 only.
    d = [.5, .2, .9, .1, .7, .3]
    case = _case([[0, 0]] + [[7, 7]] * 5, [1] * 6, [(0, 1)], [[[v, 0] for v in d]])
    mining_logits = np.zeros((1, 1, 6, 3), np.float32)
    mining_logits[0, 0, :, 0] = 1.0
    mining_logits[0, 0, 3] = [0, 5, 0]
    _, aux = losses.coseg_loss(**case, options=losses.MiningOptions(agreement=True),
                               mining_logits_unlabeled=_f32(mining_logits))
    assert np.flatnonzero(aux["mined"].numpy()[0, 1]).tolist() == [3]


def test_several_targets_each_pair_is_a_term():
    # Labeled: class 1 at both positions, features (1, 0) -> g^f = (1, 0), r_1 = (1, 0),
    # n_1 = 2 -> one position a target. Unlabeled GAPs: u0 = (.5, 0), u1 = (3, 0),
    # u2 = (1, 0): order u2, u0, u1.
    feats_u = [[[1, 0], [0, 0]], [[3, 0], [3, 0]], [[1, 0], [1, 0]]]
    logits_u = np.zeros((3, 1, 2, 3), np.float32)
    logits_u[2, 0, 0] = [0, 1, 0]       # u2: mined position 0 (r_1 exactly)
    logits_u[0, 0, 0] = [0, 2, 0]       # u0: mined position 0 ((1, 0) again)
    case = _case([[1, 0], [1, 0]], [1, 1], [(0, 1)], feats_u, logits_u=logits_u)
    loss1, aux1 = losses.coseg_loss(**case)
    assert aux1["targets"].numpy().tolist() == [2]
    assert loss1.numpy() == pytest.approx(-(1 - math.log(2 + E)), rel=1e-6)
    loss2, aux2 = losses.coseg_loss(**case, options=losses.MiningOptions(num_targets=2))
    assert aux2["targets"].numpy().tolist() == [2, 0]
    assert aux2["sources"].numpy().tolist() == [0, 0]
    expected = -((1 - math.log(2 + E)) + (2 - math.log(2 + E**2))) / 2
    assert loss2.numpy() == pytest.approx(expected, rel=1e-6)
    # More targets than unlabeled images: capped at B_u = 3.
    _, aux5 = losses.coseg_loss(**case, options=losses.MiningOptions(num_targets=5))
    assert aux5["targets"].numpy().tolist() == [2, 0, 1]


def test_several_targets_in_tf_function_with_unknown_batch():
    case = _case([[1, 0], [1, 0]], [1, 1], [(0, 1)],
                 [[[1, 0], [0, 0]], [[3, 0], [3, 0]], [[1, 0], [1, 0]]])
    options = losses.MiningOptions(num_targets=2, point="prototype", distance="cosine",
                                   agreement=True)
    eager, _ = losses.coseg_loss(**case, options=options)
    specs = {k: tf.TensorSpec([None] + v.shape[1:].as_list(), v.dtype)
             for k, v in case.items() if k != "num_classes"}

    @tf.function(input_signature=[specs])
    def fn(inputs):
        return losses.coseg_loss(**inputs, num_classes=3, options=options)[0]

    traced = fn({k: v for k, v in case.items() if k != "num_classes"})
    assert traced.numpy() == pytest.approx(eager.numpy(), abs=1e-7)
    assert np.isfinite(traced.numpy())


@pytest.mark.parametrize("bad", [dict(point="max"), dict(distance="l1"),
                                 dict(features="eval"), dict(num_targets=0),
                                 dict(num_targets=True)])
def test_mining_options_refuse_unknown_values(bad):
    with pytest.raises(ValueError, match="MiningOptions"):
        losses.MiningOptions(**bad)


def test_paper_mining_is_the_default():
    assert losses.MiningOptions().is_paper
    assert not losses.MiningOptions(agreement=True).is_paper


# === In the trainer: mining on a second, inference-mode pass ===
def _trainer(mining, dropout_rate=0.5):
    import keras

    from coseg_tf import model as model_lib
    from coseg_tf import objectives
    from coseg_tf import trainer as trainer_lib

    keras.utils.set_random_seed(0)
    net = model_lib.build_deeplab_largefov(num_classes=3, width_multiplier=0.0625,
                                           dropout_rate=dropout_rate)
    return trainer_lib.CosegTrainer(net, num_classes=3,
                                    objective=objectives.build("coseg", mining=mining))


def _batch(seed, size=33, n_f=2, n_u=3):
    rng = np.random.default_rng(seed)
    region = np.zeros((size, size, 1), np.float32)
    region[4:28, 8:24] = 1
    labels = np.zeros((size, size), np.int32)
    labels[4:16, 8:24] = 1
    labels[16:28, 8:24] = 2
    return {"labeled": {"image": _f32(rng.uniform(0, 255, (n_f, size, size, 3))),
                        "human_region": _f32(np.stack([region] * n_f)),
                        "labels": _i32(np.stack([labels] * n_f))},
            "unlabeled": {"image": _f32(rng.uniform(0, 255, (n_u, size, size, 3))),
                          "human_region": _f32(np.stack([region] * n_u))}}


def test_inference_features_mine_on_the_dropout_free_pass_with_the_training_gradient():
    from coseg_tf import masking

    options = losses.MiningOptions(features="inference", num_targets=2)
    trainer = _trainer(options)
    batch = _batch(0)
    # What the mining must read: the network in inference mode (no dropout).
    images = tf.concat([batch["labeled"]["image"], batch["unlabeled"]["image"]], 0)
    regions = tf.concat([batch["labeled"]["human_region"],
                         batch["unlabeled"]["human_region"]], 0)
    clean = trainer.network({"image": images, "human_region": regions}, training=False)
    size = tf.shape(clean["logits"])[1:3]
    labels = losses.downsample_labels(labels=batch["labeled"]["labels"], size=size)
    region_u = masking.resize_region(batch["unlabeled"]["human_region"], size)[..., 0]
    _, want = losses.coseg_loss(
        logits_labeled=clean["logits"][:2], labels=labels,
        features_labeled=clean["masked_features"][:2], logits_unlabeled=clean["logits"][2:],
        features_unlabeled=clean["masked_features"][2:], region_unlabeled=region_u,
        num_classes=3, options=options)
    assert want["mined"].numpy().sum() > 0
    for _ in range(2):  # dropout draws differ between the steps; the mining does not
        with tf.GradientTape() as tape:
            result, aux = trainer.compute_losses(batch, training=True)
        np.testing.assert_array_equal(aux["mined"].numpy(), want["mined"].numpy())
        np.testing.assert_array_equal(aux["targets"].numpy(), want["targets"].numpy())
        grads = tape.gradient(result["coseg"], trainer.network.trainable_variables)
        # the gradient of L_coseg flows through the training pass
        assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
    # The paper's reading mines on the training pass: with dropout the mined positions
    # follow the dropout draw (checked over a few steps).
    paper = _trainer(losses.PAPER_MINING)
    draws = [paper.compute_losses(batch, training=True)[1]["mined"].numpy()
             for _ in range(4)]
    assert any((d != draws[0]).any() for d in draws[1:])


# === Flags ===
@pytest.fixture(scope="module")
def tfrecords(tmp_path_factory):
    from conftest import make_synthetic_tfrecords

    return make_synthetic_tfrecords(tmp_path_factory.mktemp("synthetic"), num_images=8,
                                    image_size=64, seed=0)


@pytest.mark.parametrize("override, words", [
    (dict(method="supervised", mining_agreement=True), "--method=supervised has no L_coseg"),
    (dict(method="gmp", mining_targets=2), "--method=gmp has no L_coseg"),
    (dict(mining_point="centroid"), "--mining_*: MiningOptions: point='centroid'"),
    (dict(mining_targets=0), "num_targets must be an int >= 1"),
])
def test_mining_flags_are_checked_before_any_work(tfrecords, tmp_path, override, words):
    from coseg_tf import train_lib

    config = dict(train_data=tfrecords["train"], model_dir=str(tmp_path / "run"),
                  init="random", width_multiplier=0.0625, crop_size=33, num_labeled=2,
                  method="coseg", steps=1, strategy="default", verbose=0)
    config.update(override)
    with pytest.raises(train_lib.ConfigError) as e:
        train_lib.run_training(train_lib.TrainConfig(**config))
    assert words in str(e.value)
    assert not (tmp_path / "run").exists()
    # the same options with coseg are accepted
    if "method" in override:
        config.update(method="coseg")
        train_lib.validate(train_lib.TrainConfig(**config))


# === tools/mining_diagnostics.py: precision against chance, by hand ===
def _fake_network(feats, logits):
    """A 'network' returning fixed outputs for a batch of 1 labeled + 1 unlabeled image."""
    def call(inputs, training=False):
        return {"logits": _f32(logits), "masked_features": _f32(feats)}
    return call


@pytest.mark.parametrize("target_feature_at_0, expected", [((1, 0), 0.0), ((0, 1), 1.0)])
def test_mining_precision_of_the_diagnostics_tool(target_feature_at_0, expected):
    from tools import mining_diagnostics

    # 9 x 9 images: the 2 x 2 feature grid reads pixels (0, 0), (0, 8), (8, 0), (8, 8).
    labels = np.zeros((1, 9, 9), np.int32)
    labels[0, 0, 0] = labels[0, 0, 8] = 1     # class 1 on two cells: |S_1| = 1
    labels[0, 8, 0] = 2                       # class 2 on one cell: |S_2| = 0
    hidden = np.zeros((1, 9, 9), np.int32)
    hidden[0, 0, 0] = 2
    hidden[0, 0, 8] = hidden[0, 8, 8] = 1     # class 1 on 2 of the 4 target cells
    feats = np.full((2, 2, 2, 2), 0.5, np.float32)
    feats[0, 0, :] = [1, 0]                   # the labeled class-1 cells: r_1 = (1, 0)
    feats[1, 0, 0] = target_feature_at_0      # target cell 0 (hidden class 2)
    feats[1, 0, 1] = [0, 1] if target_feature_at_0 == (1, 0) else [1, 0]
    logits = np.zeros((2, 2, 2, 3), np.float32)
    batch = {"labeled": {"image": _f32(np.zeros((1, 9, 9, 3))),
                         "human_region": _f32(np.ones((1, 9, 9, 1))), "labels": _i32(labels)},
             "unlabeled": {"image": _f32(np.zeros((1, 9, 9, 3))),
                           "human_region": _f32(np.ones((1, 9, 9, 1))),
                           "diagnostic_labels": _i32(hidden)}}
    out = mining_diagnostics.mining_precision(
        _fake_network(feats, logits), [batch], num_classes=3,
        options=losses.MiningOptions(), training=False)
    assert out["mined"] == 1
    assert out["precision"] == expected
    assert out["chance"] == pytest.approx(0.5)     # 2 of the 4 region cells are class 1
    assert out["per_class"] == {1: expected, 2: None}


def test_pseudo_label_quality_of_the_diagnostics_tool():
    from tools import mining_diagnostics

    # 2 x 2 feature grid over a 9 x 9 image, the whole image the region. Per cell, the
    # teacher's probabilities and pseudo-label, and the hidden class:
    #   cell (0, 0): logits (0, ln 9, 0)  -> p = 9/11 ~ 0.818, label 1; hidden 1 (right)
    #   cell (0, 1): logits (0, 0, 0)     -> p = 1/3,          label 0; hidden 2 (wrong)
    #   cell (1, 0): logits (0, 0, ln 99) -> p = 99/101 ~ 0.98, label 2; hidden 2 (right)
    #   cell (1, 1): logits (ln 3, 0, 0)  -> p = 3/5,          label 0; hidden ignore
    logits = np.zeros((1, 2, 2, 3), np.float32)
    logits[0, 0, 0, 1] = math.log(9)
    logits[0, 1, 0, 2] = math.log(99)
    logits[0, 1, 1, 0] = math.log(3)
    hidden = np.zeros((1, 9, 9), np.int32)
    hidden[0, 0, 0], hidden[0, 0, 8], hidden[0, 8, 0], hidden[0, 8, 8] = 1, 2, 2, 255
    batch = {"unlabeled": {"image": _f32(np.zeros((1, 9, 9, 3))),
                           "human_region": _f32(np.ones((1, 9, 9, 1))),
                           "diagnostic_labels": _i32(hidden)}}
    out = mining_diagnostics.pseudo_label_quality(
        _fake_network(np.zeros((1, 2, 2, 2)), logits), [batch],
        thresholds=["0", "0.5", "0.95", "0.99"])
    assert out[0.0] == {"share": pytest.approx(1.0), "accuracy": pytest.approx(2 / 3),
                        "positions": 3}
    assert out[0.5]["share"] == pytest.approx(2 / 3) and out[0.5]["accuracy"] == 1.0
    assert out[0.95]["share"] == pytest.approx(1 / 3) and out[0.95]["accuracy"] == 1.0
    assert out[0.99] == {"share": 0.0, "accuracy": None, "positions": 3}
