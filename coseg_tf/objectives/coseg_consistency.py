"""`coseg_fixmatch`, `coseg_unimatch`: the cosegmentation loss on top of consistency.

  coseg_fixmatch = L_humanparts + alpha L_human + beta L_coseg + lambda_u L_fixmatch
  coseg_unimatch = L_humanparts + alpha L_human + beta L_coseg
                   + lambda_u (0.5 L_fixmatch + 0.5 L_fp)

What these ask: does the cosegmentation loss add anything to weak-to-strong
consistency? So the consistency part is computed exactly as `fixmatch` / `unimatch`
compute it (the same passes, teacher and terms), and the coseg terms are added in the
same weak-to-strong form:
  - L_coseg is MINED ON THE WEAK VIEW: target choice, class points and the nearest
    positions read the weak view's features (and, with agreement, its predictions),
    with every `losses.MiningOptions` as coseg takes them. features="inference": the
    teacher pass (inference mode, no gradient), extended to the labeled images, gives
    both; features="train" (the paper: features with dropout on): the labeled images'
    features of the training pass, as coseg, and the weak view's of a pass in training
    mode without gradient (the weak view has no training pass here).
  - Its gradient flows through the first strong view's prediction at the mined
    positions, as L_fixmatch's flows through it at the pseudo-labelled ones. The strong
    view shows the target's own pixel everywhere but inside its CutMix box, where it
    shows its partner: mined positions there are dropped (`losses.coseg_loss`'s
    valid_unlabeled; |S_c| counts the positions kept).
  - L_human applies to the first strong view inside its (mixed) human region: a
    position there is a person's, whichever image it shows.
This keeps the training pass of fixmatch (labeled + strong views); the weak view goes
through the network only without gradient, so coseg costs its mining, not a pass.
"""

from __future__ import annotations

import dataclasses

from coseg_tf import consistency_losses
from coseg_tf import losses as losses_lib
from coseg_tf.objectives import base
from coseg_tf.objectives import coseg as coseg_lib
from coseg_tf.objectives import fixmatch as fixmatch_lib
from coseg_tf.objectives import unimatch as unimatch_lib


class _CosegOnStrong:
    """The coseg terms added to a consistency objective (`FixMatch` or `UniMatch`)."""

    mines = True

    def _init_coseg(self, alpha, beta, mining):
        self.alpha = base.check_range("alpha", alpha, 0.0)
        self.beta = base.check_range("beta", beta, 0.0)
        self.mining = coseg_lib.as_mining_options(mining)

    def weights(self):
        weights = dict(super().weights())
        return {"humanparts": weights.pop("humanparts"), "human": self.alpha,
                "coseg": self.beta, **weights}

    def passes(self, training):
        passes = dict(super().passes(training))
        if self.mining.features == "inference":
            # The teacher pass gives the mining its labeled and weak-view features.
            teacher = passes["teacher"]
            passes["teacher"] = dataclasses.replace(teacher,
                                                    views=(base.LABELED,) + teacher.views)
        elif training:
            # The weak view's features with dropout on, without gradient.
            passes["mining"] = base.Pass((base.WEAK,), mode=base.TRAIN, gradient=False)
        return passes

    def compute(self, outputs, data, *, num_classes, ignore_label, training):
        values, labels, size, targets = self.consistency_values(
            outputs, data, num_classes=num_classes, ignore_label=ignore_label)
        train = outputs["train"]
        if self.mining.features == "inference":
            mine_labeled = outputs["teacher"][base.LABELED]
        else:
            mine_labeled = train[base.LABELED]
        mine_weak = outputs.get("mining", outputs["teacher"])[base.WEAK]
        strong = base.STRONG_VIEWS[0]
        mixed = fixmatch_lib.strong_targets(targets, data, strong, size)
        human, coseg, aux = coseg_lib.coseg_terms(
            mine_labeled=mine_labeled, mine_unlabeled=mine_weak,
            logits_unlabeled=train[strong]["logits"], labels=labels,
            region_unlabeled=targets["region"], region_human=mixed["region"],
            num_classes=num_classes, ignore_label=ignore_label, options=self.mining,
            size=size, valid_unlabeled=1.0 - fixmatch_lib.strong_box(data, strong, size))
        values.update(human=human, coseg=coseg)
        return values, aux


class CosegFixMatch(_CosegOnStrong, fixmatch_lib.FixMatch):
    """L = L_humanparts + alpha L_human + beta L_coseg + unlabeled_weight L_fixmatch.

    Args: as `Coseg` (alpha, beta, mining) and `FixMatch` (unlabeled_weight,
    confidence_threshold).
    """

    name = "coseg_fixmatch"
    summary = "L_all + lambda_u L_fixmatch, L_coseg mined on the weak view"
    HYPERPARAMETERS = ("alpha", "beta", "mining", "unlabeled_weight",
                       "confidence_threshold")

    def __init__(self, alpha=losses_lib.DEFAULT_ALPHA, beta=losses_lib.DEFAULT_BETA,
                 mining=losses_lib.PAPER_MINING,
                 unlabeled_weight=consistency_losses.DEFAULT_UNLABELED_WEIGHT,
                 confidence_threshold=consistency_losses.DEFAULT_CONFIDENCE_THRESHOLD):
        fixmatch_lib.FixMatch.__init__(self, unlabeled_weight, confidence_threshold)
        self._init_coseg(alpha, beta, mining)


class CosegUniMatch(_CosegOnStrong, unimatch_lib.UniMatch):
    """L = L_humanparts + alpha L_human + beta L_coseg + unlabeled_weight (0.5
    L_fixmatch + 0.5 L_fp).

    Args: as `Coseg` (alpha, beta, mining) and `UniMatch` (unlabeled_weight,
    confidence_threshold, feature_dropout).
    """

    name = "coseg_unimatch"
    summary = "L_all + lambda_u L_unimatch, L_coseg mined on the weak view"
    HYPERPARAMETERS = ("alpha", "beta", "mining", "unlabeled_weight",
                       "confidence_threshold", "feature_dropout")

    def __init__(self, alpha=losses_lib.DEFAULT_ALPHA, beta=losses_lib.DEFAULT_BETA,
                 mining=losses_lib.PAPER_MINING,
                 unlabeled_weight=consistency_losses.DEFAULT_UNLABELED_WEIGHT,
                 confidence_threshold=consistency_losses.DEFAULT_CONFIDENCE_THRESHOLD,
                 feature_dropout=consistency_losses.DEFAULT_FEATURE_DROPOUT):
        unimatch_lib.UniMatch.__init__(self, unlabeled_weight, confidence_threshold,
                                       feature_dropout)
        self._init_coseg(alpha, beta, mining)
