"""`fixmatch`: L_humanparts + lambda_u L_fixmatch, weak-to-strong consistency.

FixMatch for segmentation as UniMatch (Yang et al., CVPR 2023) re-implements it, in
this project's setting (DESIGN §3; `coseg_tf.consistency_losses` has the loss and its
interpretations):
  - the weak view is the unlabeled crop the pipeline makes (scale, crop, flip); a
    teacher, the same network in inference mode without gradient, predicts it;
  - its pseudo-labels: the arg max inside the human region, the background outside
    (the box is known), kept where the confidence is >= `confidence_threshold` (0.95,
    UniMatch's public choice);
  - the strong view is the same crop with photometric changes and CutMix within the
    replica's batch (`pipelines.augment`); the pseudo-labels, their confidence mask
    and the region are mixed with the same boxes and partners as the images
    (`strong_targets`), at feature resolution (cell k follows pixel 8k, as every
    label here);
  - L_fixmatch is the cross entropy of the strong view's prediction to the mixed
    pseudo-labels on the confident positions of its (mixed) human region.

The teacher runs in inference mode, where UniMatch's runs in training mode: its
DeepLabV3+ has no dropout (training mode changes only its batch statistics), while
this network drops half of fc6's and fc7's outputs in training mode, noise that
UniMatch's teacher never sees (and that halves the mining precision of coseg, DESIGN
§3). It costs a forward pass of the unlabeled images without gradient, about a third
of their training pass; the strong view takes the weak view's place in the training
pass.
"""

from __future__ import annotations

from coseg_tf import consistency_losses
from coseg_tf.objectives import base
from pipelines import augment, streams


def teacher_targets(teacher_output, data, size, threshold):
    """{"pseudo_labels", "confident", "region"} of the weak view at feature resolution,
    and the share of the region's confident positions (a diagnostic).

    Args:
      teacher_output: {"logits", ...} of the weak view from a pass without gradient.
      data: the element.
      size: (h, w) of the feature grid.
      threshold: the confidence threshold.
    """
    region = base.feature_region(data["unlabeled"]["human_region"], size)
    labels, _, confident = consistency_losses.pseudo_labels(
        logits=teacher_output["logits"], region=region, threshold=threshold)
    share = consistency_losses.confident_share(confident=confident, region=region)
    return {"pseudo_labels": labels, "confident": confident, "region": region}, share


def strong_box(data, view, size):
    """float32 [B_u, h, w]: the CutMix box of a strong view at feature resolution."""
    _, box_key = streams.STRONG_VIEW_KEYS[base.STRONG_VIEWS.index(view)]
    return base.feature_region(data["unlabeled"][box_key][..., None], size)


def strong_targets(targets, data, view, size):
    """`teacher_targets`' maps mixed as the strong view `view` mixes its images.

    Inside image i's CutMix box every map takes the values of its partner (the image
    whose pixels the box shows), with the box brought to the feature grid as the
    regions are (cell k reads pixel 8k of the box).
    """
    return augment.cutmix(targets, strong_box(data, view, size),
                          base.cutmix_partner(data["unlabeled"]))


def consistency(student_output, targets):
    """L_fixmatch of a view's output against (mixed) targets."""
    return consistency_losses.consistency_loss(
        logits=student_output["logits"], pseudo_labels=targets["pseudo_labels"],
        confident=targets["confident"], region=targets["region"])


class FixMatch(base.Objective):
    """L = L_humanparts + unlabeled_weight L_fixmatch.

    Passes: the training pass over the labeled images and the strong view; the
    teacher pass over the weak view (inference mode, no gradient). Tracks
    "pseudo_confident", the share of the weak view's region whose pseudo-label passes
    the threshold (UniMatch's "mask ratio").

    Args:
      unlabeled_weight: lambda_u (default 1: UniMatch's FixMatch weighs the two
        terms alike).
      confidence_threshold: in [0, 1] (default 0.95, UniMatch's).
    """

    name = "fixmatch"
    summary = ("L_humanparts + lambda_u L_fixmatch: weak-to-strong consistency "
               "(FixMatch as UniMatch trains it)")
    needs = streams.StreamNeeds(unlabeled=True, strong_views=1)
    HYPERPARAMETERS = ("unlabeled_weight", "confidence_threshold")
    diagnostics = ("pseudo_confident",)

    def __init__(self, unlabeled_weight=consistency_losses.DEFAULT_UNLABELED_WEIGHT,
                 confidence_threshold=consistency_losses.DEFAULT_CONFIDENCE_THRESHOLD):
        self.unlabeled_weight = base.check_range("unlabeled_weight", unlabeled_weight, 0.0)
        self.confidence_threshold = base.check_range("confidence_threshold",
                                                     confidence_threshold, 0.0, 1.0)

    def weights(self):
        return {"humanparts": 1.0, "fixmatch": self.unlabeled_weight}

    def passes(self, training):
        return {"train": base.Pass((base.LABELED, base.STRONG_VIEWS[0])),
                "teacher": base.Pass((base.WEAK,), mode=base.INFERENCE, gradient=False)}

    def compute(self, outputs, data, *, num_classes, ignore_label, training):
        values, _, _, _ = self.consistency_values(outputs, data, num_classes=num_classes,
                                                  ignore_label=ignore_label)
        return values, None

    def consistency_values(self, outputs, data, *, num_classes, ignore_label):
        """(values, labels [B_f, h, w], size, teacher targets): L_humanparts, the
        consistency terms (`consistency_terms`) and "pseudo_confident"."""
        train = outputs["train"]
        humanparts, labels, size = base.labeled_targets(
            train[base.LABELED], data, num_classes=num_classes, ignore_label=ignore_label)
        targets, share = teacher_targets(outputs["teacher"][base.WEAK], data, size,
                                         self.confidence_threshold)
        values = {"humanparts": humanparts, "pseudo_confident": share}
        values.update(self.consistency_terms(train, data, targets, size))
        return values, labels, size, targets

    def consistency_terms(self, train, data, targets, size):
        """{"fixmatch": L_fixmatch} of the training pass's strong view."""
        strong = base.STRONG_VIEWS[0]
        return {"fixmatch": consistency(train[strong],
                                        strong_targets(targets, data, strong, size))}
