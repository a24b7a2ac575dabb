"""CosegTrainer: the distributed step equals the single-device step; metrics; losses."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mirrored_report():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "mirrored_step_check.py")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _own_terms(method):
    """A method's terms and diagnostics beside L_humanparts (its objective's)."""
    from coseg_tf import objectives

    objective = objectives.build(method)
    return tuple(t for t in objective.weights() if t != "humanparts") \
        + tuple(objective.diagnostics)


def _methods():
    from coseg_tf import objectives

    return list(objectives.METHODS)


@pytest.mark.parametrize("method", _methods())
def test_mirrored_step_equals_single_device_step(mirrored_report, method):
    assert mirrored_report["devices"] == 2
    rep = mirrored_report[method]
    # The step did change the weights, by much more than the tolerance below.
    assert rep["max_weight_change"] > 1e-3
    assert rep["max_weight_diff"] < 1e-5, rep
    for name in ("loss", "humanparts") + _own_terms(method):
        assert rep["losses_mirrored"][name] == pytest.approx(
            rep["losses_single"][name], rel=1e-5, abs=1e-6), name
    for name in _own_terms(method):
        # each method's own term is tracked and was not zero
        assert rep["losses_mirrored"][name] > 0, name


def test_mirrored_float16_step_equals_single_device_step(mirrored_report):
    rep = mirrored_report["coseg_float16"]
    assert rep["applied_steps"] == 1  # applied, not skipped by the loss scaling
    assert rep["max_weight_change"] > 1e-3
    assert rep["max_weight_diff"] < 1e-5, rep
    for name in ("loss", "humanparts", "human", "coseg"):
        assert rep["losses_mirrored"][name] == pytest.approx(
            rep["losses_single"][name], rel=1e-5, abs=1e-6), name


def test_replicas_skip_a_float16_step_together(mirrored_report):
    """One replica's Inf gradient skips the step on both (Keras' own optimizer: not)."""
    rep = mirrored_report["loss_scale_agreement"]
    assert rep["synced_weights_finite"] and rep["synced_weights_unchanged"], rep
    assert rep["synced_scale"] == 2.0  # halved from 4


def _tiny_trainer(method, num_classes=3, mining_metrics=False, **kw):
    import keras

    from coseg_tf import model as model_lib
    from coseg_tf import trainer as trainer_lib

    keras.utils.set_random_seed(0)
    net = model_lib.build_deeplab_largefov(num_classes=num_classes, width_multiplier=0.0625,
                                           dropout_rate=0.0)
    from coseg_tf import objectives

    trainer = trainer_lib.CosegTrainer(net, num_classes=num_classes,
                                       objective=objectives.build(method, **kw),
                                       class_names=["background", "part", "other"],
                                       mining_metrics=mining_metrics)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    return trainer


def _batch(rng, n_f=1, n_u=3, size=33, diagnostics=False):
    region = np.zeros((size, size, 1), np.float32)
    region[4:28, 8:24] = 1
    labels = np.zeros((size, size), np.int32)
    labels[4:16, 8:24] = 1
    labels[16:28, 8:24] = 2
    batch = {
        "labeled": {"image": rng.uniform(0, 255, (n_f, size, size, 3)).astype(np.float32),
                    "human_region": np.stack([region] * n_f),
                    "labels": np.stack([labels] * n_f)},
        "unlabeled": {"image": rng.uniform(0, 255, (n_u, size, size, 3)).astype(np.float32),
                      "human_region": np.stack([region] * n_u)},
    }
    if diagnostics:
        batch["unlabeled"]["diagnostic_labels"] = np.stack([labels] * n_u)
    return batch


def test_train_step_reports_every_term_and_mining_precision():
    import tensorflow as tf

    trainer = _tiny_trainer("coseg", mining_metrics=True)
    batch = _batch(np.random.default_rng(0), diagnostics=True)
    hist = trainer.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=2,
                       epochs=1, verbose=0).history
    for key in ("loss", "humanparts", "human", "coseg", "mining_precision", "mining_chance",
                "mining_precision/part", "mining_precision/other"):
        assert key in hist, key
        assert np.isfinite(hist[key][0]), key
    # At feature resolution (33 -> 5, cell k on pixel 8k) the region holds rows 8, 16,
    # 24 x columns 8, 16: 6 cells, 2 of class 1 (row 8) and 4 of class 2. The labeled
    # image has the same map, so n_1 = 2 -> 1 mined, n_2 = 4 -> 2 mined. Picking at
    # random inside the target's region hits class 1 with 2/6 and class 2 with 4/6:
    # chance = (1 * 2/6 + 2 * 4/6) / 3 = 5/9.
    assert hist["mining_chance"][0] == pytest.approx(5 / 9, abs=1e-6)
    assert 0.0 <= hist["mining_precision"][0] <= 1.0


def test_diagnostic_labels_do_not_change_the_losses():
    trainer = _tiny_trainer("coseg")
    rng = np.random.default_rng(1)
    plain = _batch(rng)
    with_diag = {"labeled": plain["labeled"],
                 "unlabeled": dict(plain["unlabeled"],
                                   diagnostic_labels=np.full((3, 33, 33), 2, np.int32))}
    a, _ = trainer.compute_losses(plain, training=False)
    b, _ = trainer.compute_losses(with_diag, training=False)
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy())


def test_supervised_ignores_the_unlabeled_stream():
    trainer = _tiny_trainer("supervised")
    batch = _batch(np.random.default_rng(2))
    a, aux = trainer.compute_losses(batch, training=False)
    b, _ = trainer.compute_losses({"labeled": batch["labeled"]}, training=False)
    assert aux is None
    assert set(a) == {"loss", "humanparts"}
    np.testing.assert_allclose(a["loss"].numpy(), b["loss"].numpy())


def test_coseg_total_is_the_weighted_sum():
    trainer = _tiny_trainer("coseg", alpha=0.3, beta=0.7)
    res, _ = trainer.compute_losses(_batch(np.random.default_rng(3)), training=False)
    expected = res["humanparts"] + 0.3 * res["human"] + 0.7 * res["coseg"]
    np.testing.assert_allclose(res["loss"].numpy(), expected.numpy(), rtol=1e-6)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method"):
        _tiny_trainer("mean_teacher")


def _with_image_labels(batch, labels=(1, 1, 0)):
    n_u = len(batch["unlabeled"]["image"])
    return {"labeled": batch["labeled"],
            "unlabeled": dict(batch["unlabeled"],
                              image_labels=np.tile(np.float32(labels), (n_u, 1)))}


@pytest.mark.parametrize("method", ["supervised", "coseg"])
def test_image_labels_never_reach_a_coseg_or_supervised_step(method):
    trainer = _tiny_trainer(method)
    batch = _with_image_labels(_batch(np.random.default_rng(4)))
    with pytest.raises(ValueError, match="must not see image-level labels"):
        trainer.compute_losses(batch, training=False)


@pytest.mark.parametrize("method", ["gmp", "em_adapt"])
def test_image_label_methods_need_image_labels(method):
    trainer = _tiny_trainer(method)
    with pytest.raises(ValueError, match="needs 'image_labels'"):
        trainer.compute_losses(_batch(np.random.default_rng(5)), training=False)


@pytest.mark.parametrize("method,term", [("gmp", "gmp"), ("em_adapt", "em_adapt")])
def test_image_label_methods_total_is_the_weighted_sum(method, term):
    trainer = _tiny_trainer(method, image_label_weight=0.25)
    batch = _with_image_labels(_batch(np.random.default_rng(6)))
    res, aux = trainer.compute_losses(batch, training=False)
    assert aux is None and term in res and "coseg" not in res and "human" not in res
    expected = res["humanparts"] + 0.25 * res[term]
    np.testing.assert_allclose(res["loss"].numpy(), expected.numpy(), rtol=1e-6)
    assert res[term].numpy() > 0


# === Undefined metrics (issue 15 case 9) ===

def _nothing_to_mine(batch):
    """The batch with a labeled image of background only: no class point, nothing mined."""
    labeled = dict(batch["labeled"], labels=np.zeros_like(batch["labeled"]["labels"]))
    return {"labeled": labeled, "unlabeled": batch["unlabeled"]}


def _fit(trainer, batches, tmp_path=None):
    import keras
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(
        {k: {n: np.stack([b[k][n] for b in batches]) for n in batches[0][k]}
         for k in batches[0]})
    callbacks = []
    if tmp_path is not None:
        callbacks.append(keras.callbacks.CSVLogger(str(tmp_path / "history.csv")))
    return trainer.fit(ds.repeat(), steps_per_epoch=len(batches), epochs=1, verbose=0,
                       callbacks=callbacks).history


def test_mining_precision_is_undefined_for_an_interval_with_nothing_mined(tmp_path):
    import csv

    trainer = _tiny_trainer("coseg", mining_metrics=True)
    batch = _nothing_to_mine(_batch(np.random.default_rng(0), diagnostics=True))
    hist = _fit(trainer, [batch, batch], tmp_path)
    for key in ("mining_precision", "mining_chance", "mining_precision/part",
                "mining_precision/other"):
        assert np.isnan(hist[key][0]), (key, hist[key])  # not 0.0
    for key in ("loss", "humanparts", "human", "coseg"):
        assert np.isfinite(hist[key][0]), key  # the losses are defined (coseg is 0)
    (row,) = list(csv.DictReader(open(tmp_path / "history.csv")))
    assert row["mining_precision"] == "nan" and float(row["coseg"]) == 0.0


def test_mining_precision_counts_only_the_steps_that_mined():
    mined = _batch(np.random.default_rng(0), diagnostics=True)
    mixed = _fit(_tiny_trainer("coseg", mining_metrics=True),
                 [mined, _nothing_to_mine(mined)])
    # The interval's value is the mined step's alone (5/9 by hand, see above), not the
    # mean with a 0 of the step that mined nothing.
    assert mixed["mining_chance"][0] == pytest.approx(5 / 9, abs=1e-6)
    assert 0.0 <= mixed["mining_precision"][0] <= 1.0


def test_a_class_never_mined_for_is_undefined_not_zero():
    batch = _batch(np.random.default_rng(0), diagnostics=True)
    labels = batch["labeled"]["labels"].copy()
    labels[labels == 1] = 2  # the labeled image shows "other" only
    batch = {"labeled": dict(batch["labeled"], labels=labels), "unlabeled": batch["unlabeled"]}
    hist = _fit(_tiny_trainer("coseg", mining_metrics=True), [batch])
    assert np.isnan(hist["mining_precision/part"][0])
    assert 0.0 <= hist["mining_precision/other"][0] <= 1.0


def test_em_pseudo_foreground_leaves_out_a_step_without_any_region():
    batch = _with_image_labels(_batch(np.random.default_rng(7)))
    empty = {"labeled": batch["labeled"], "unlabeled": dict(
        batch["unlabeled"], human_region=np.zeros_like(batch["unlabeled"]["human_region"]))}
    alone = _fit(_tiny_trainer("em_adapt"), [batch])["em_pseudo_foreground"][0]
    mixed = _fit(_tiny_trainer("em_adapt"), [batch, empty])["em_pseudo_foreground"][0]
    assert 0 < alone <= 1
    assert mixed == pytest.approx(alone, abs=1e-6)  # not (alone + 0) / 2


def test_defined_mean():
    from coseg_tf import metrics

    m = metrics.DefinedMean("x")
    assert np.isnan(float(m.result()))
    m.update_state(0.0, sample_weight=0.0)
    m.update_state(float("nan"))
    assert np.isnan(float(m.result()))
    m.update_state(0.5, sample_weight=2.0)
    m.update_state(1.0)
    m.update_state(float("nan"), sample_weight=5.0)
    assert float(m.result()) == pytest.approx((0.5 * 2 + 1.0) / 3)
    m.reset_state()
    assert np.isnan(float(m.result()))
