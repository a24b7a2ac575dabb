"""Losses of weak-to-strong consistency: FixMatch and UniMatch, as UniMatch implements them.

FixMatch (Sohn et al., NeurIPS 2020) for segmentation as UniMatch (Yang et al., "Revisiting
weak-to-strong consistency in semi-supervised semantic segmentation", CVPR 2023) trains
it: a teacher predicts each unlabeled image's weak view without gradient; its arg max is
the pseudo-label of each position, kept where its probability (the confidence) is at
least a threshold; the student's prediction of a strong view of the same image (same
geometry, photometric changes, CutMix) is trained towards it by cross entropy.
UniMatch adds a feature-perturbation stream (the weak view's prediction from encoder
features under channel dropout, trained towards the same pseudo-labels) and a second
strong view. Everything here is at feature resolution (the logits' h x w).

  `pseudo_labels`       teacher logits -> pseudo-labels, confidence, confident mask;
  `consistency_loss`    the cross entropy of a prediction to the pseudo-labels on the
                        confident positions of the human region.

Interpretations (this project's setting, where every unlabeled image comes with its
human region, the person boxes):
1. Outside the human region the pseudo-label is the background, whatever the teacher
   says, and counts as confident: the box is known (DESIGN §1), and nothing outside it
   is a person.
2. The loss covers the human region only, not the whole crop. The masking layer
   multiplies the features by the region (DESIGN §2), so outside it the logits are
   fc8's bias, the same for every image: a cross entropy there would only pull that
   bias towards the background, in proportion to how much of the crop lies outside
   the boxes, a pull that L_humanparts already gives through the labeled images'
   background. Inside, every position counts in the normaliser, confident or not, as
   UniMatch divides by every valid pixel (its padding is invalid; here the padding
   lies outside the region too): the loss is the mean over the region of the masked
   cross entropy, so it grows with the share of confident positions.
3. Per image, then averaged over the images with a non-empty region (DESIGN §3's
   per-image means; UniMatch pools the pixels of its batch). 0 when no image has a
   region, and 0 (never NaN) when no position passes the threshold.
4. The threshold: 0.95, as UniMatch's public configurations (`conf_thresh: 0.95` in
   configs/pascal.yaml and configs/cityscapes.yaml of UniMatch and of UniMatch V2).
   A position is confident when its confidence is >= the threshold, as theirs.

Scaling across replicas: per-replica means, as every loss of `coseg_tf.losses`; the
trainer divides by the replica count.
"""

from __future__ import annotations

import tensorflow as tf

from coseg_tf.losses import (BACKGROUND, _check_logits_and_region, _check_spatial,
                             _mean_over_valid, _region_mask)

# UniMatch's confidence threshold (configs/*.yaml: conf_thresh 0.95, V1 and V2).
DEFAULT_CONFIDENCE_THRESHOLD = 0.95
# Weight of the unlabeled term: L = L_humanparts + weight * L_fixmatch. UniMatch's
# FixMatch weighs the two alike ((loss_x + loss_u) / 2; the / 2 only scales the
# learning rate).
DEFAULT_UNLABELED_WEIGHT = 1.0
# UniMatch's feature perturbation: channel dropout (nn.Dropout2d) of rate 0.5 on the
# encoder's features.
DEFAULT_FEATURE_DROPOUT = 0.5


def pseudo_labels(*, logits, region, threshold=DEFAULT_CONFIDENCE_THRESHOLD):
    """The teacher's pseudo-labels of the weak view and where they are confident.

    Inside the human region: the arg max class of p = softmax(logits) and its
    probability (the confidence); outside: the background with confidence 1
    (interpretation 1). No gradient.

    Args:
      logits: [B, h, w, C] teacher logits (class 0 the background).
      region: [B, h, w] or [B, h, w, 1] human region at feature resolution.
      threshold: a position is confident when its confidence is >= threshold.

    Returns:
      labels: int32 [B, h, w].
      confidence: float32 [B, h, w] in [1/C, 1].
      confident: float32 [B, h, w], 1 where confidence >= threshold.
    """
    where = "pseudo_labels"
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"{where}: threshold must be in [0, 1], got {threshold}")
    logits, inside = _check_logits_and_region(tf.stop_gradient(logits), region, where)
    # [B, h, w, C]
    probs = tf.nn.softmax(logits, axis=-1)
    # [B, h, w]
    labels = tf.where(inside > 0, tf.argmax(probs, axis=-1, output_type=tf.int32),
                      BACKGROUND)
    confidence = tf.where(inside > 0, tf.reduce_max(probs, axis=-1), 1.0)
    confident = tf.cast(confidence >= threshold, tf.float32)
    return labels, confidence, confident


def consistency_loss(*, logits, pseudo_labels, confident, region):
    """Cross entropy towards the pseudo-labels on the confident positions of the region.

    Per image with a non-empty region: sum over the region of confident(k) * CE(k) /
    |region|, CE(k) = -log softmax(logits(k))[pseudo_labels(k)]; averaged over those
    images (0 when none). The gradient flows through `logits` only.

    Args:
      logits: [B, h, w, C] the student's logits (strong view, or the perturbed weak
        view).
      pseudo_labels: int [B, h, w] (`pseudo_labels`, mixed by CutMix for a strong
        view).
      confident: [B, h, w] 1 where the pseudo-label is kept (mixed alike).
      region: [B, h, w] or [B, h, w, 1] the human region of the view the logits are of
        (mixed alike).

    Returns:
      float32 scalar.
    """
    where = "consistency_loss"
    logits, inside = _check_logits_and_region(logits, region, where)
    pseudo_labels = tf.stop_gradient(tf.cast(pseudo_labels, tf.int32))
    confident = tf.stop_gradient(_region_mask(confident, where))
    for name, t in (("pseudo_labels", pseudo_labels), ("confident", confident)):
        _check_spatial(logits, t, where, name)
    # [B, h, w]
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=pseudo_labels,
                                                        logits=logits)
    # [B] |region|
    size = tf.reduce_sum(inside, axis=[1, 2])
    per_image = tf.reduce_sum(inside * confident * ce, axis=[1, 2]) / tf.maximum(size, 1.0)
    return _mean_over_valid(per_image, size > 0)


def confident_share(*, confident, region):
    """Share of the region's positions whose pseudo-label is confident (UniMatch's "mask
    ratio"), pooled over the batch; NaN (undefined) without any region, which the
    trainer's tracker leaves out of its mean (`metrics.DefinedMean`). A diagnostic,
    never a loss."""
    inside = _region_mask(region, "confident_share")
    confident = tf.cast(confident, tf.float32)
    return tf.reduce_sum(inside * confident) / tf.reduce_sum(inside)
