"""`unimatch`: FixMatch with two strong views and a feature-perturbation stream (UniMatch).

UniMatch (Yang et al., CVPR 2023; their public unimatch.py) adds to FixMatch:
  - a second, independently drawn strong view (its own photometric draw and CutMix
    box), trained towards the same pseudo-labels;
  - a feature-perturbation stream: the weak view through the encoder, channel dropout
    of rate `feature_dropout` (0.5, their nn.Dropout2d) on the encoder's output, then
    the head; its prediction is trained towards the (unmixed) pseudo-labels.
Their loss, with the labeled term: loss_x + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp (halved,
which only scales the learning rate). Here L = L_humanparts + lambda_u (0.5 L_fixmatch
+ 0.5 L_fp) with L_fixmatch the mean of the two strong views' terms: the same weights
at lambda_u = 1.

Where the perturbation acts: UniMatch perturbs the backbone's features and decodes them
with its DeepLabV3+ decoder (ASPP, fusion, classifier). This network's counterpart of
that decoder is LargeFOV's head, fc6 (3x3, dilation 12) -> fc7 -> masking -> fc8, so
the dropout acts on pool5a's output (`coseg_tf.model.encoder_and_head`), not just before
fc8 (a linear 1 x 1 layer, after fc7's own dropout 0.5 in training mode: a perturbation
there would add little). The teacher is the inference-mode pass of `fixmatch`.
"""

from __future__ import annotations

from coseg_tf import consistency_losses
from coseg_tf.objectives import base
from coseg_tf.objectives import fixmatch as fixmatch_lib
from pipelines import streams


class UniMatch(fixmatch_lib.FixMatch):
    """L = L_humanparts + unlabeled_weight (0.5 L_fixmatch + 0.5 L_fp).

    Passes: the training pass over the labeled images, the weak view (its encoder
    features perturbed) and both strong views; the teacher pass over the weak view.
    Terms: "fixmatch" (the mean of the two strong views' terms) and
    "feature_perturbation".

    Args:
      unlabeled_weight, confidence_threshold: as `FixMatch`.
      feature_dropout: rate of the channel dropout on the weak view's encoder
        features, in [0, 1) (UniMatch: 0.5).
    """

    name = "unimatch"
    summary = ("FixMatch + a second strong view + feature perturbation of the weak view "
               "(UniMatch)")
    needs = streams.StreamNeeds(unlabeled=True, strong_views=2)
    HYPERPARAMETERS = ("unlabeled_weight", "confidence_threshold", "feature_dropout")

    def __init__(self, unlabeled_weight=consistency_losses.DEFAULT_UNLABELED_WEIGHT,
                 confidence_threshold=consistency_losses.DEFAULT_CONFIDENCE_THRESHOLD,
                 feature_dropout=consistency_losses.DEFAULT_FEATURE_DROPOUT):
        super().__init__(unlabeled_weight, confidence_threshold)
        self.feature_dropout = base.check_range("feature_dropout", feature_dropout, 0.0,
                                                1.0, high_open=True)

    def weights(self):
        return {"humanparts": 1.0, "fixmatch": 0.5 * self.unlabeled_weight,
                "feature_perturbation": 0.5 * self.unlabeled_weight}

    def passes(self, training):
        return {"train": base.Pass((base.LABELED, base.WEAK) + base.STRONG_VIEWS,
                                   perturbed=(base.WEAK,),
                                   feature_dropout=self.feature_dropout),
                "teacher": base.Pass((base.WEAK,), mode=base.INFERENCE, gradient=False)}

    def consistency_terms(self, train, data, targets, size):
        """{"fixmatch": the mean of both strong views' terms, "feature_perturbation":
        the perturbed weak view's term (unmixed targets)}."""
        strong = [fixmatch_lib.consistency(
            train[view], fixmatch_lib.strong_targets(targets, data, view, size))
            for view in base.STRONG_VIEWS]
        return {"fixmatch": 0.5 * (strong[0] + strong[1]),
                "feature_perturbation": fixmatch_lib.consistency(train[base.WEAK], targets)}
