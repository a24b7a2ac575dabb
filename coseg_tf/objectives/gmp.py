"""`gmp`: L_humanparts + w L_gmp, Global Max Pooling against image-level labels (Table 2).

A baseline that reads the unlabeled images' image-level labels
(`coseg_tf.image_label_losses.gmp_loss`).
"""

from __future__ import annotations

from coseg_tf import image_label_losses
from coseg_tf.objectives import base
from pipelines import streams


class Gmp(base.Objective):
    """L = L_humanparts + image_label_weight L_gmp; one training pass over both streams.

    Args:
      image_label_weight: weight of L_gmp (default 1).
    """

    name = "gmp"
    summary = "L_humanparts + w L_gmp (Table 2; reads image-level labels)"
    needs = streams.StreamNeeds(unlabeled=True, image_labels=True)
    HYPERPARAMETERS = ("image_label_weight",)

    def __init__(self, image_label_weight=image_label_losses.DEFAULT_IMAGE_LABEL_WEIGHT):
        self.image_label_weight = base.check_range("image_label_weight",
                                                   image_label_weight, 0.0)

    def weights(self):
        return {"humanparts": 1.0, "gmp": self.image_label_weight}

    def passes(self, training):
        return {"train": base.Pass((base.LABELED, base.WEAK))}

    def compute(self, outputs, data, *, num_classes, ignore_label, training):
        train = outputs["train"]
        humanparts, _, size = base.labeled_targets(
            train[base.LABELED], data, num_classes=num_classes, ignore_label=ignore_label)
        unlabeled = data["unlabeled"]
        gmp = image_label_losses.gmp_loss(
            logits=train[base.WEAK]["logits"],
            region=base.feature_region(unlabeled["human_region"], size),
            image_labels=unlabeled["image_labels"])
        return {"humanparts": humanparts, "gmp": gmp}, None
