"""`em_adapt`: L_humanparts + w L_em, EM-Adapt with image-level labels (Table 2).

A baseline that reads the unlabeled images' image-level labels: the E-step's pseudo
labels from adaptive biases, the M-step's cross entropy
(`coseg_tf.image_label_losses`).
"""

from __future__ import annotations

import tensorflow as tf

from coseg_tf import image_label_losses
from coseg_tf import losses as losses_lib
from coseg_tf.objectives import base
from pipelines import streams


class EmAdapt(base.Objective):
    """L = L_humanparts + image_label_weight L_em; one training pass over both streams.

    Tracks "em_pseudo_foreground": the share of the region's positions the E-step gave
    a part (a diagnostic).

    Args:
      image_label_weight: weight of L_em (default 1).
      em_fg_share, em_bg_share: the E-step's shares of the human region for each
        present foreground class and for the background (Papandreou et al.: 0.2, 0.4).
    """

    name = "em_adapt"
    summary = "L_humanparts + w L_em (Table 2; reads image-level labels)"
    needs = streams.StreamNeeds(unlabeled=True, image_labels=True)
    HYPERPARAMETERS = ("image_label_weight", "em_fg_share", "em_bg_share")
    diagnostics = ("em_pseudo_foreground",)

    def __init__(self, image_label_weight=image_label_losses.DEFAULT_IMAGE_LABEL_WEIGHT,
                 em_fg_share=image_label_losses.DEFAULT_FG_SHARE,
                 em_bg_share=image_label_losses.DEFAULT_BG_SHARE):
        self.image_label_weight = base.check_range("image_label_weight",
                                                   image_label_weight, 0.0)
        self.em_fg_share = base.check_range("em_fg_share", em_fg_share, 0.0, 1.0,
                                            low_open=True)
        self.em_bg_share = base.check_range("em_bg_share", em_bg_share, 0.0, 1.0,
                                            low_open=True)

    def weights(self):
        return {"humanparts": 1.0, "em_adapt": self.image_label_weight}

    def passes(self, training):
        return {"train": base.Pass((base.LABELED, base.WEAK))}

    def compute(self, outputs, data, *, num_classes, ignore_label, training):
        train = outputs["train"]
        humanparts, _, size = base.labeled_targets(
            train[base.LABELED], data, num_classes=num_classes, ignore_label=ignore_label)
        unlabeled = data["unlabeled"]
        region = base.feature_region(unlabeled["human_region"], size)
        logits = train[base.WEAK]["logits"]
        pseudo = image_label_losses.em_adapt_pseudo_labels(
            logits=logits, region=region, image_labels=unlabeled["image_labels"],
            fg_share=self.em_fg_share, bg_share=self.em_bg_share)
        em = image_label_losses.em_adapt_loss(logits=logits, pseudo_labels=pseudo)
        foreground = tf.cast(pseudo != losses_lib.BACKGROUND, tf.float32) * region
        # NaN (undefined, left out of the interval's mean) without any region.
        share = tf.reduce_sum(foreground) / tf.reduce_sum(region)
        return {"humanparts": humanparts, "em_adapt": em, "em_pseudo_foreground": share}, None
