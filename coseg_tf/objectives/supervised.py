"""`supervised`: L_humanparts on the labeled images alone (the paper's baselines (a), (c)).

The unlabeled stream is not built for it (`needs`) and not read if an element has one.
"""

from __future__ import annotations

from coseg_tf.objectives import base
from pipelines import streams


class Supervised(base.Objective):
    """L = L_humanparts, the class-balanced cross entropy of the labeled images (DESIGN §3).

    One training pass over the labeled view.
    """

    name = "supervised"
    summary = "L_humanparts only (paper (a), (c))"
    needs = streams.StreamNeeds(unlabeled=False)

    def weights(self):
        return {"humanparts": 1.0}

    def passes(self, training):
        return {"train": base.Pass((base.LABELED,))}

    def compute(self, outputs, data, *, num_classes, ignore_label, training):
        humanparts, _, _ = base.labeled_targets(outputs["train"][base.LABELED], data,
                                                num_classes=num_classes,
                                                ignore_label=ignore_label)
        return {"humanparts": humanparts}, None
