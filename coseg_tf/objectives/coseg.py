"""`coseg`: L_all = L_humanparts + alpha L_human + beta L_coseg (the paper's (b), DESIGN §3).

The one place L_all is summed (`Coseg.weights`, `Objective.total`); the losses are the
pure functions of `coseg_tf.losses`. `coseg_terms` computes L_human and L_coseg for
the methods that combine coseg with weak-to-strong consistency
(`coseg_tf.objectives.coseg_consistency`).
"""

from __future__ import annotations

from coseg_tf import losses as losses_lib
from coseg_tf.objectives import base
from pipelines import streams


def as_mining_options(mining):
    """A `losses.MiningOptions` from itself or its dict (a config); TypeError else."""
    if isinstance(mining, dict):
        mining = losses_lib.MiningOptions(**mining)
    if not isinstance(mining, losses_lib.MiningOptions):
        raise TypeError(f"mining must be a losses.MiningOptions, got {mining!r}")
    return mining


def coseg_terms(*, mine_labeled, mine_unlabeled, logits_unlabeled, labels,
                region_unlabeled, region_human, num_classes, ignore_label, options,
                size, valid_unlabeled=None):
    """(L_human, L_coseg, aux): the unlabeled terms of L_all.

    Args:
      mine_labeled, mine_unlabeled: {"logits", "masked_features"} of the labeled
        images and of the unlabeled images the mining reads (the targets' view).
      logits_unlabeled: [B_u, h, w, C] the logits the gradient flows through (L_human
        and L_coseg at the mined positions).
      labels: int32 [B_f, h, w] at feature resolution.
      region_unlabeled: float32 [B_u, h, w] the region the mining searches (of the
        mined view).
      region_human: float32 [B_u, h, w] the region of `logits_unlabeled`'s view, where
        L_human applies.
      options: `losses.MiningOptions`.
      size: (h, w), for the mining metric.
      valid_unlabeled: [B_u, h, w] or None (`losses.coseg_loss`).

    Returns:
      (L_human, L_coseg, aux) with aux as `Objective.compute` documents it.
    """
    human = losses_lib.human_loss(logits=logits_unlabeled, region=region_human)
    coseg, aux = losses_lib.coseg_loss(
        logits_labeled=mine_labeled["logits"], labels=labels,
        features_labeled=mine_labeled["masked_features"],
        logits_unlabeled=logits_unlabeled,
        features_unlabeled=mine_unlabeled["masked_features"],
        region_unlabeled=region_unlabeled, num_classes=num_classes,
        ignore_label=ignore_label, options=options,
        mining_logits_unlabeled=mine_unlabeled["logits"], valid_unlabeled=valid_unlabeled)
    return human, coseg, dict(aux, region_unlabeled=region_unlabeled, size=size)


class Coseg(base.Objective):
    """L_all = L_humanparts + alpha L_human + beta L_coseg, mined as `mining` says.

    One training pass over the labeled and the unlabeled images (the network has no
    batch statistics by default, so one call equals two and costs one). With
    mining.features == "inference", a second pass over both in inference mode (no
    dropout, no gradient) gives the mining its features, class points and predictions
    (`losses.MiningOptions`); the gradient still flows through the training pass.

    Args:
      alpha: weight of L_human (paper: 0.001).
      beta: weight of L_coseg (paper: 0.001).
      mining: `losses.MiningOptions` (default: the paper's mining).
    """

    name = "coseg"
    summary = "L_all = L_humanparts + alpha L_human + beta L_coseg (paper (b))"
    needs = streams.StreamNeeds(unlabeled=True)
    HYPERPARAMETERS = ("alpha", "beta", "mining")
    mines = True

    def __init__(self, alpha=losses_lib.DEFAULT_ALPHA, beta=losses_lib.DEFAULT_BETA,
                 mining=losses_lib.PAPER_MINING):
        self.alpha = base.check_range("alpha", alpha, 0.0)
        self.beta = base.check_range("beta", beta, 0.0)
        self.mining = as_mining_options(mining)

    def weights(self):
        return {"humanparts": 1.0, "human": self.alpha, "coseg": self.beta}

    def passes(self, training):
        views = (base.LABELED, base.WEAK)
        passes = {"train": base.Pass(views)}
        if training and self.mining.features == "inference":
            passes["mining"] = base.Pass(views, mode=base.INFERENCE, gradient=False)
        return passes

    def compute(self, outputs, data, *, num_classes, ignore_label, training):
        train = outputs["train"]
        humanparts, labels, size = base.labeled_targets(
            train[base.LABELED], data, num_classes=num_classes, ignore_label=ignore_label)
        # [B_u, h, w] the unlabeled images' own regions, as the masking layer saw them
        region = base.feature_region(data["unlabeled"]["human_region"], size)
        # What the mining reads: this pass (the paper), or the inference-mode pass.
        mine = outputs.get("mining", train)
        human, coseg, aux = coseg_terms(
            mine_labeled=mine[base.LABELED], mine_unlabeled=mine[base.WEAK],
            logits_unlabeled=train[base.WEAK]["logits"], labels=labels,
            region_unlabeled=region, region_human=region, num_classes=num_classes,
            ignore_label=ignore_label, options=self.mining, size=size)
        return {"humanparts": humanparts, "human": human, "coseg": coseg}, aux
