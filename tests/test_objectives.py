"""Tests of coseg_tf/objectives: the registry, and each objective's terms as training runs them.

An objective computes its terms from the outputs of the network's passes and the
element; here the outputs are built by hand at feature resolution, and the element's
labels, regions and CutMix boxes at input resolution (cell k reads pixel 8k), so each
value can be worked out by hand. L_all's tests live here (the objective that training
runs sums it; `coseg_tf.losses` holds the terms).
"""

import dataclasses
import inspect
import math

import numpy as np
import pytest
import tensorflow as tf

from coseg_tf import consistency_losses
from coseg_tf import losses
from coseg_tf import objectives
from coseg_tf.objectives import base
from pipelines import streams
from test_losses import FLOAT_INPUTS, IGNORE, _f32, _hand_case, _i32, _random_case, _variant

E = math.e


def _full(x, dtype=np.float32):
    """A feature-resolution map [B, h, w] at input resolution [B, 8h - 7, 8w - 7]:
    cell k's value on pixels 8k .. 8k + 7, so that pixel 8k (what cell k reads) has it."""
    x = np.asarray(x)
    h, w = x.shape[1:3]
    up = np.kron(x, np.ones((1, 8, 8), x.dtype))[:, :8 * h - 7, :8 * w - 7]
    return up.astype(dtype)


def _out(logits, features=None):
    logits = tf.convert_to_tensor(logits)
    if features is None:
        features = tf.zeros(tf.concat([tf.shape(logits)[:3], [2]], 0))
    return {"logits": logits, "masked_features": tf.convert_to_tensor(features)}


def _coseg_inputs(case):
    """(outputs, element) of the coseg objective from a feature-resolution case of
    tests/test_losses.py."""
    outputs = {"train": {
        "labeled": _out(case["logits_labeled"], case["features_labeled"]),
        "weak": _out(case["logits_unlabeled"], case["features_unlabeled"])}}
    data = {"labeled": {"labels": tf.constant(_full(np.asarray(case["labels"]), np.int32))},
            "unlabeled": {"human_region": tf.constant(
                _full(np.asarray(case["region_unlabeled"]))[..., None])}}
    return outputs, data


def _compute(objective, outputs, data, num_classes=3, training=True):
    return objective.compute(outputs, data, num_classes=num_classes,
                             ignore_label=IGNORE, training=training)


# === The registry ===
def test_registry_lists_every_method_with_its_interface():
    from coseg_tf import train_lib

    assert objectives.METHODS == ("supervised", "coseg", "gmp", "em_adapt", "fixmatch",
                                  "unimatch", "coseg_fixmatch", "coseg_unimatch")
    fields = set(train_lib.TrainConfig.__dataclass_fields__)
    for name, cls in objectives.REGISTRY.items():
        assert cls.name == name and cls.summary
        assert isinstance(cls.needs, streams.StreamNeeds)
        # hyper-parameters: the constructor's arguments, each a training flag
        assert tuple(inspect.signature(cls).parameters) == cls.HYPERPARAMETERS
        for hyper in cls.HYPERPARAMETERS:
            assert hyper in fields or hyper == "mining", (name, hyper)
        objective = objectives.build(name)
        weights = objective.weights()
        assert list(weights)[0] == "humanparts" and weights["humanparts"] == 1.0
        assert "train" in objective.passes(True)
        # config round trip
        again = objectives.from_config(objectives.to_config(objective))
        assert type(again) is cls and again.get_config() == objective.get_config()
        assert cls.mines == ("mining" in cls.HYPERPARAMETERS)


def test_build_takes_what_the_method_reads_and_checks_it():
    coseg = objectives.build("coseg", alpha=0.3, beta=0.7, unlabeled_weight=5.0)
    assert coseg.weights() == {"humanparts": 1.0, "human": 0.3, "coseg": 0.7}
    fix = objectives.build("fixmatch", alpha=0.3, unlabeled_weight=2.0)
    assert fix.weights() == {"humanparts": 1.0, "fixmatch": 2.0}
    uni = objectives.build("unimatch", unlabeled_weight=2.0)
    # UniMatch's 0.25 + 0.25 (the two strong views, mean tracked) and 0.5 (FP)
    assert uni.weights() == {"humanparts": 1.0, "fixmatch": 1.0, "feature_perturbation": 1.0}
    with pytest.raises(ValueError, match="unknown method 'mean_teacher'"):
        objectives.build("mean_teacher")
    for bad, words in ((dict(confidence_threshold=1.5), "confidence_threshold must be in"),
                       (dict(unlabeled_weight=-1), "unlabeled_weight must be in"),
                       (dict(feature_dropout=1.0), "feature_dropout must be in")):
        with pytest.raises(ValueError, match=words):
            objectives.build("unimatch", **bad)
    with pytest.raises(ValueError, match="em_fg_share"):
        objectives.build("em_adapt", em_fg_share=0.0)


def test_passes_of_each_method():
    p = objectives.build("fixmatch").passes(True)
    assert p["train"].views == ("labeled", "strong") and p["train"].gradient
    assert p["teacher"] == base.Pass(("weak",), mode="inference", gradient=False)
    p = objectives.build("unimatch").passes(True)
    assert p["train"].views == ("labeled", "weak", "strong", "strong_2")
    assert p["train"].perturbed == ("weak",) and p["train"].feature_dropout == 0.5
    # coseg: a mining pass only when asked, and only in a training step
    inference = losses.MiningOptions(features="inference")
    assert list(objectives.build("coseg").passes(True)) == ["train"]
    assert list(objectives.build("coseg", mining=inference).passes(True)) == ["train", "mining"]
    assert list(objectives.build("coseg", mining=inference).passes(False)) == ["train"]
    # coseg_fixmatch mines on the weak view: inference features from the teacher pass,
    # training-mode features from a pass without gradient
    p = objectives.build("coseg_fixmatch", mining=inference).passes(True)
    assert p["teacher"].views == ("labeled", "weak") and "mining" not in p
    p = objectives.build("coseg_fixmatch").passes(True)
    assert p["mining"] == base.Pass(("weak",), mode="train", gradient=False)
    assert "mining" not in objectives.build("coseg_fixmatch").passes(False)


# === coseg: L_all (moved from tests/test_losses.py with the second L_all) ===
def test_coseg_total_is_the_weighted_sum_of_the_loss_functions():
    case = _hand_case()
    objective = objectives.build("coseg", alpha=0.5, beta=0.25)
    out, aux = _compute(objective, *_coseg_inputs(case))
    hp = losses.humanparts_loss(logits=case["logits_labeled"], labels=case["labels"],
                                num_classes=3)
    hu = losses.human_loss(logits=case["logits_unlabeled"], region=case["region_unlabeled"])
    co, want = losses.coseg_loss(**case)
    assert out["humanparts"].numpy() == pytest.approx(hp.numpy())
    assert out["human"].numpy() == pytest.approx(hu.numpy())
    assert out["coseg"].numpy() == pytest.approx(co.numpy())
    assert objective.total(out).numpy() == pytest.approx(
        hp.numpy() + 0.5 * hu.numpy() + 0.25 * co.numpy(), rel=1e-6)
    for key in ("targets", "mined", "num_mined"):
        np.testing.assert_array_equal(aux[key].numpy(), want[key].numpy())
    assert aux["size"].numpy().tolist() == [3, 3]


@pytest.mark.parametrize("name", ["class_absent", "one_pixel_class", "empty_regions",
                                  "all_ignored", "no_labeled_image", "one_pixel_classes"])
def test_coseg_empty_cases_are_finite(name):
    case = _variant(name)
    objective = objectives.build("coseg")
    with tf.GradientTape() as tape:
        tape.watch([case[k] for k in FLOAT_INPUTS])
        outputs, data = _coseg_inputs(case)
        out, aux = _compute(objective, outputs, data)
        total = objective.total(out)
    grads = tape.gradient(total, [case[k] for k in FLOAT_INPUTS],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    for key in ("humanparts", "human", "coseg"):
        assert np.isfinite(out[key].numpy()), key
    assert np.isfinite(total.numpy())
    for key, g in zip(FLOAT_INPUTS, grads):
        assert np.all(np.isfinite(tf.convert_to_tensor(g).numpy())), key
    if name in ("empty_regions", "all_ignored", "no_labeled_image", "one_pixel_classes"):
        assert out["coseg"].numpy() == 0.0
    if name == "empty_regions":
        assert out["human"].numpy() == 0.0
    if name in ("all_ignored", "no_labeled_image"):
        assert out["humanparts"].numpy() == 0.0
        assert total.numpy() == pytest.approx(0.001 * out["human"].numpy())
    if name in ("class_absent", "one_pixel_class"):
        # Class 1 alone: S_1 = {0, 1} as in the hand case, |C_i| = 1.
        expected = -((1 - math.log(2 + E)) + (0 - math.log(E + 2))) / 2
        assert out["coseg"].numpy() == pytest.approx(expected, rel=1e-6)
        assert aux["num_mined"].numpy().tolist() == [[0, 2, 0]]


def test_coseg_in_tf_function_with_unknown_batch_matches_eager():
    objective = objectives.build("coseg")

    def specs(case):
        outputs, data = _coseg_inputs(case)
        spec = lambda t: tf.TensorSpec([None] + t.shape[1:].as_list(), t.dtype)  # noqa: E731
        return tf.nest.map_structure(spec, (outputs, data))

    case = _random_case(0)
    case = {k: (tf.constant(v) if isinstance(v, np.ndarray) else v) for k, v in case.items()}

    @tf.function(input_signature=list(specs(case)))
    def fn(outputs, data):
        out, aux = _compute(objective, outputs, data, num_classes=4)
        return dict(out, loss=objective.total(out)), aux["mined"]

    for seed, sizes in ((0, {}), (1, {}), (3, dict(b_f=1, b_u=2))):
        case = _random_case(seed, **sizes)
        case = {k: (tf.constant(v) if isinstance(v, np.ndarray) else v)
                for k, v in case.items()}
        outputs, data = _coseg_inputs(case)
        traced, mined = fn(outputs, data)
        eager, aux = _compute(objective, outputs, data, num_classes=4)
        for key in ("humanparts", "human", "coseg"):
            assert traced[key].numpy() == pytest.approx(eager[key].numpy(), rel=1e-6), key
        np.testing.assert_array_equal(mined.numpy(), aux["mined"].numpy())
    assert fn.experimental_get_tracing_count() == 1


# === fixmatch, unimatch: a tiny case worked out by hand ===
def _consistency_case():
    """Feature grid 1 x 2 (input 1 x 9: cell 0 reads pixel 0, cell 1 pixel 8), 3
    classes, B_f = 1, B_u = 2; threshold 0.9.

    Teacher (weak view) logits:
      image 0: cell 0 (0, 5, 0) -> class 1, p = .987 confident; cell 1 (0, 0, 1) ->
               class 2, p = .576 not confident. Region: both cells.
      image 1: cell 0 (0, 0, 6) -> class 2, p = .995 confident; cell 1 (0, 4, 0) but
               outside the region -> background, confident (known).
    Strong view 1: image 0's CutMix box covers cell 0 (pixels 0..3), so there it shows
      its partner, image 1 (cutmix_partner: i + 1 mod 2): pseudo-label 2, confident,
      in the region; cell 1 its own (class 2, not confident). Image 1: no box.
      Strong logits: image 0 cell 0 (1, 0, 0) -> CE to 2 = log(2 + e); image 1 cell 0
      (0, 0, 2) -> CE = log(2 + e^2) - 2. L_fixmatch = (log(2 + e) / 2 + log(2 + e^2)
      - 2) / 2 (image 0 over its 2 region cells, image 1 over its 1).
    Strong view 2: no box; logits 0: image 0 log 3 / 2, image 1 log 3.
    Perturbed weak view (unimatch's FP): image 0 cell 0 (0, 2, 0) -> CE to 1 =
      log(2 + e^2) - 2, over 2 cells; image 1 cell 0 (0, 0, 0) -> log 3.
    """
    teacher = np.zeros((2, 1, 2, 3), np.float32)
    teacher[0, 0] = [[0, 5, 0], [0, 0, 1]]
    teacher[1, 0] = [[0, 0, 6], [0, 4, 0]]
    strong = np.zeros((2, 1, 2, 3), np.float32)
    strong[0, 0, 0] = [1, 0, 0]
    strong[0, 0, 1] = [0, 7, 0]   # not confident: never read
    strong[1, 0, 0] = [0, 0, 2]
    strong[1, 0, 1] = [9, 0, 0]   # outside the region: never read
    fp = np.zeros((2, 1, 2, 3), np.float32)
    fp[0, 0, 0] = [0, 2, 0]
    region = np.zeros((2, 1, 9, 1), np.float32)
    region[0] = 1.0
    region[1, 0, :4] = 1.0
    box = np.zeros((2, 1, 9), np.float32)
    box[0, 0, :4] = 1.0
    labels = np.zeros((1, 1, 9), np.int32)
    labels[0, 0, 8] = 1
    logits_f = _f32([[[[2, 0, 0], [0, 1, 0]]]])
    data = {"labeled": {"labels": tf.constant(labels)},
            "unlabeled": {"human_region": _f32(region), "cutmix_box": _f32(box),
                          "cutmix_box_2": tf.zeros_like(_f32(box))}}
    outputs = {"train": {"labeled": _out(logits_f), "strong": _out(_f32(strong)),
                         "strong_2": _out(tf.zeros([2, 1, 2, 3])), "weak": _out(_f32(fp))},
               "teacher": {"weak": _out(_f32(teacher))}}
    expected = {
        "fixmatch": (math.log(2 + E) / 2 + math.log(2 + E**2) - 2) / 2,
        "strong_2": (math.log(3) / 2 + math.log(3)) / 2,
        "feature_perturbation": ((math.log(2 + E**2) - 2) / 2 + math.log(3)) / 2,
        "pseudo_confident": 2 / 3,
        "humanparts": losses.humanparts_loss(logits=logits_f, labels=_i32([[[0, 1]]]),
                                             num_classes=3).numpy(),
    }
    return outputs, data, expected


def test_fixmatch_hand_value():
    outputs, data, want = _consistency_case()
    objective = objectives.build("fixmatch", confidence_threshold=0.9, unlabeled_weight=0.7)
    out, aux = _compute(objective, outputs, data)
    assert aux is None
    for key in ("fixmatch", "pseudo_confident", "humanparts"):
        assert out[key].numpy() == pytest.approx(want[key], rel=1e-6), key
    assert objective.total(out).numpy() == pytest.approx(
        want["humanparts"] + 0.7 * want["fixmatch"], rel=1e-6)


def test_unimatch_hand_value():
    outputs, data, want = _consistency_case()
    objective = objectives.build("unimatch", confidence_threshold=0.9, unlabeled_weight=0.7)
    out, _ = _compute(objective, outputs, data)
    strong_mean = (want["fixmatch"] + want["strong_2"]) / 2
    assert out["fixmatch"].numpy() == pytest.approx(strong_mean, rel=1e-6)
    assert out["feature_perturbation"].numpy() == pytest.approx(
        want["feature_perturbation"], rel=1e-6)
    # UniMatch: loss_x + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp (times lambda_u)
    assert objective.total(out).numpy() == pytest.approx(
        want["humanparts"] + 0.7 * (0.25 * want["fixmatch"] + 0.25 * want["strong_2"]
                                    + 0.5 * want["feature_perturbation"]), rel=1e-6)


def test_fixmatch_gradient_flows_through_the_strong_view_only():
    outputs, data, _ = _consistency_case()
    objective = objectives.build("fixmatch", confidence_threshold=0.9)
    watched = [outputs["train"]["strong"]["logits"], outputs["teacher"]["weak"]["logits"]]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        out, _ = _compute(objective, outputs, data)
    g_strong, g_teacher = tape.gradient(out["fixmatch"], watched)
    assert g_teacher is None  # the teacher's pseudo-labels are constants
    moved = np.abs(g_strong.numpy()).sum(-1) > 0
    assert moved.tolist() == [[[True, False]], [[True, False]]]


# === coseg_fixmatch: L_coseg mined on the weak view, trained on the strong view ===
def _coseg_fixmatch_inputs(mining=losses.PAPER_MINING):
    """The hand case of tests/test_losses.py as the weak view (teacher pass, inference
    features: it gives the labeled images' and the weak view's features); the strong
    view's logits are the hand case's unlabeled logits, and the target (unlabeled
    image 1) has a CutMix box on cell (0, 1) (pixels rows 0..7, columns 8..15)."""
    case = _hand_case()
    box = np.zeros((2, 17, 17), np.float32)
    box[1, 0:8, 8:16] = 1.0
    region = _full(np.asarray(case["region_unlabeled"]))[..., None]
    weak_logits = np.zeros((2, 3, 3, 3), np.float32)
    weak_logits[1, 0, 0] = [0, 4, 0]   # confident class 1 at the target's cell 0
    data = {"labeled": {"labels": tf.constant(_full(np.asarray(case["labels"]), np.int32))},
            "unlabeled": {"human_region": tf.constant(region), "cutmix_box": tf.constant(box)}}
    outputs = {
        "train": {"labeled": _out(case["logits_labeled"], case["features_labeled"]),
                  "strong": _out(case["logits_unlabeled"])},
        "teacher": {"labeled": _out(case["logits_labeled"], case["features_labeled"]),
                    "weak": _out(_f32(weak_logits), case["features_unlabeled"])}}
    objective = objectives.build("coseg_fixmatch", alpha=0.5, beta=0.25,
                                 mining=dataclasses.replace(mining, features="inference"))
    return case, outputs, data, objective


def test_coseg_fixmatch_drops_mined_positions_the_strong_view_does_not_show():
    case, outputs, data, objective = _coseg_fixmatch_inputs()
    out, aux = _compute(objective, outputs, data)
    # Mined on the weak view as in the hand case: S_1 = {0, 1}, S_2 = {2} in target 1.
    # Position 1 lies in the target's CutMix box: the strong view shows image 0 there,
    # so it is dropped: S_1 = {0}. The strong logits at 0 are (0, 1, 0), at 2 (0, 0, 2).
    assert aux["targets"].numpy().tolist() == [1]
    assert np.flatnonzero(aux["mined"].numpy()[0, 1]).tolist() == [0]
    assert np.flatnonzero(aux["mined"].numpy()[0, 2]).tolist() == [2]
    expected = -((1 - math.log(2 + E)) + (2 - math.log(2 + E**2))) / 2
    assert out["coseg"].numpy() == pytest.approx(expected, rel=1e-6)
    # L_human on the strong view inside its mixed region (here the same region: the
    # box shows image 0, whose region covers every cell)
    hu = losses.human_loss(logits=case["logits_unlabeled"], region=case["region_unlabeled"])
    assert out["human"].numpy() == pytest.approx(hu.numpy(), rel=1e-6)
    # The consistency part is fixmatch's, computed the same way.
    fix, _ = _compute(objectives.build("fixmatch"), outputs, data)
    for key in ("humanparts", "fixmatch", "pseudo_confident"):
        assert out[key].numpy() == pytest.approx(fix[key].numpy(), rel=1e-6), key
    assert objective.total(out).numpy() == pytest.approx(
        out["humanparts"].numpy() + 0.5 * out["human"].numpy() + 0.25 * expected
        + out["fixmatch"].numpy(), rel=1e-6)


@pytest.mark.parametrize("mining", [losses.MiningOptions(agreement=True),
                                    losses.MiningOptions(point="prototype", num_targets=2),
                                    losses.MiningOptions(distance="cosine")])
def test_coseg_fixmatch_carries_the_mining_options(mining):
    case, outputs, data, objective = _coseg_fixmatch_inputs(mining)
    _, aux = _compute(objective, outputs, data)
    valid = np.ones((2, 3, 3), np.float32)
    valid[1, 0, 1] = 0.0
    # what coseg_loss mines with these options on the weak view (agreement reads the
    # weak view's predictions), minus the positions in the boxes
    _, want = losses.coseg_loss(
        logits_labeled=case["logits_labeled"], labels=case["labels"],
        features_labeled=case["features_labeled"], logits_unlabeled=case["logits_unlabeled"],
        features_unlabeled=case["features_unlabeled"],
        region_unlabeled=case["region_unlabeled"], num_classes=3,
        options=dataclasses.replace(mining, features="inference"),
        mining_logits_unlabeled=outputs["teacher"]["weak"]["logits"],
        valid_unlabeled=_f32(valid))
    np.testing.assert_array_equal(aux["mined"].numpy(), want["mined"].numpy())
    np.testing.assert_array_equal(aux["targets"].numpy(), want["targets"].numpy())


# === In the trainer: the teacher pass, the feature perturbation ===
def _trainer(method, dropout_rate=0.5, **hyper):
    import keras

    from coseg_tf import model as model_lib
    from coseg_tf import trainer as trainer_lib

    keras.utils.set_random_seed(0)
    net = model_lib.build_deeplab_largefov(num_classes=3, width_multiplier=0.0625,
                                           dropout_rate=dropout_rate)
    return trainer_lib.CosegTrainer(net, num_classes=3,
                                    objective=objectives.build(method, **hyper))


def _element(seed=0, n_f=1, n_u=3, size=33):
    rng = np.random.default_rng(seed)
    region = np.zeros((n_u, size, size, 1), np.float32)
    region[:, 4:28, 8:24] = 1
    labels = np.zeros((n_f, size, size), np.int32)
    labels[:, 4:16, 8:24] = 1
    labels[:, 16:28, 8:24] = 2
    box = np.zeros((n_u, size, size), np.float32)
    box[0, 0:16, 0:16] = 1
    image = lambda n: _f32(rng.uniform(0, 255, (n, size, size, 3)))  # noqa: E731
    return {"labeled": {"image": image(n_f), "human_region": _f32(region[:n_f]),
                        "labels": _i32(labels)},
            "unlabeled": {"image": image(n_u), "human_region": _f32(region),
                          "strong_image": image(n_u), "cutmix_box": _f32(box),
                          "strong_image_2": image(n_u), "cutmix_box_2": _f32(box[::-1])}}


def test_teacher_predicts_the_weak_view_in_inference_mode_without_gradient():
    trainer = _trainer("fixmatch")
    data = _element()
    spec = trainer.objective.passes(True)["teacher"]
    with tf.GradientTape() as tape:
        out = trainer.run_pass(spec, data, training=True)["weak"]
    clean = trainer.network({"image": data["unlabeled"]["image"],
                             "human_region": data["unlabeled"]["human_region"]},
                            training=False)
    # dropout 0.5 is on in a training step, but not in the teacher
    np.testing.assert_allclose(out["logits"].numpy(), clean["logits"].numpy(), atol=1e-5)
    grads = tape.gradient(out["logits"], trainer.network.trainable_variables)
    assert all(g is None for g in grads)


def test_strong_view_is_mixed_within_the_batch():
    trainer = _trainer("fixmatch", dropout_rate=0.0)
    data = _element()
    strong = base.view_inputs(data, "strong")
    u = data["unlabeled"]
    # image 0's box (rows, columns 0..15) shows image 1's strong image and region
    np.testing.assert_array_equal(strong["image"].numpy()[0, :16, :16],
                                  u["strong_image"].numpy()[1, :16, :16])
    np.testing.assert_array_equal(strong["image"].numpy()[0, 16:], u["strong_image"].numpy()[0, 16:])
    np.testing.assert_array_equal(strong["image"].numpy()[1:], u["strong_image"].numpy()[1:])
    np.testing.assert_array_equal(strong["human_region"].numpy()[0, :16, :16],
                                  u["human_region"].numpy()[1, :16, :16])
    out = trainer.run_pass(trainer.objective.passes(True)["train"], data, training=True)
    ref = trainer.network(strong, training=False)
    np.testing.assert_allclose(out["strong"]["logits"].numpy(), ref["logits"].numpy(),
                               atol=1e-5)


def test_feature_perturbation_drops_whole_channels_of_the_weak_view_only():
    trainer = _trainer("unimatch", dropout_rate=0.0)
    data = _element()
    spec = trainer.objective.passes(True)["train"]
    out = trainer.run_pass(spec, data, training=True)
    for view in ("labeled", "strong", "strong_2"):
        ref = trainer.network(base.view_inputs(data, view), training=False)
        np.testing.assert_allclose(out[view]["logits"].numpy(), ref["logits"].numpy(),
                                   atol=1e-5, err_msg=view)
    clean = trainer.network(base.view_inputs(data, "weak"), training=False)
    assert np.abs(out["weak"]["logits"].numpy() - clean["logits"].numpy()).max() > 1e-4
    # the multipliers: 0 or 1 / keep per (image, channel) on the weak rows, 1 elsewhere
    features = tf.zeros([1 + 3 * 3, 5, 5, 32])
    mult = trainer._runner._channel_dropout(spec, [1, 3, 3, 3], features).numpy()
    assert mult.shape == (10, 1, 1, 32)
    np.testing.assert_array_equal(mult[[0, 4, 5, 6, 7, 8, 9]], 1.0)
    assert set(np.unique(mult[1:4])) == {0.0, 2.0}
    # outside a training step nothing is perturbed
    evaluated = trainer.run_pass(spec, data, training=False)
    np.testing.assert_allclose(evaluated["weak"]["logits"].numpy(), clean["logits"].numpy(),
                               atol=1e-5)


@pytest.mark.parametrize("method", ["fixmatch", "unimatch", "coseg_fixmatch",
                                    "coseg_unimatch"])
def test_consistency_methods_train_without_nan_from_a_fresh_network(method):
    """A fresh network is near uniform: no pseudo-label passes 0.95, the consistency
    terms are 0, and the step stays finite."""
    import keras

    trainer = _trainer(method)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01))
    logs = trainer.fit(tf.data.Dataset.from_tensors(_element()).repeat(),
                       steps_per_epoch=2, epochs=1, verbose=0).history
    assert logs["pseudo_confident"][0] == 0.0
    assert logs["fixmatch"][0] == 0.0
    for key, values in logs.items():
        assert np.isfinite(values[0]), key


def test_element_without_strong_views_is_refused():
    trainer = _trainer("fixmatch")
    data = _element()
    del data["unlabeled"]["cutmix_box"]
    with pytest.raises(ValueError, match="needs 'cutmix_box'"):
        trainer.compute_losses(data, training=False)
    assert consistency_losses.DEFAULT_FEATURE_DROPOUT == 0.5


def test_a_consistency_run_checkpoint_loads_as_any_other(tmp_path):
    """The encoder/head split of the feature perturbation holds no variable and is not
    tracked: a unimatch trainer's weights file has the layout of every other method's
    (what eval and export load, `train_lib.load_network`)."""
    import keras

    trainer = _trainer("unimatch", dropout_rate=0.0)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01))
    trainer.build()
    trainer.fit(tf.data.Dataset.from_tensors(_element()).repeat(), steps_per_epoch=1,
                epochs=1, verbose=0)
    path = str(tmp_path / "unimatch.weights.h5")
    trainer.save_weights(path)
    other = _trainer("coseg", dropout_rate=0.0)
    assert len(trainer.weights) == len(other.weights) == len(trainer.network.weights)
    plain = _trainer("supervised", dropout_rate=0.0)
    plain.compile(optimizer=keras.optimizers.SGD(0.01))
    plain.build()
    plain.optimizer.build(plain.network.trainable_variables)
    plain.load_weights(path)
    for a, b in zip(plain.network.weights, trainer.network.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
