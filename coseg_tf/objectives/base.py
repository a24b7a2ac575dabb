"""The interface of a training method (an objective) and the views it is computed on.

An objective says, as official/vision's tasks do for theirs:
  - what it needs from the streams (`needs`, a `pipelines.streams.StreamNeeds`: the
    unlabeled stream, image-level labels, strong views);
  - its loss terms and their weights (`weights()`: the total is their weighted sum,
    `total`), its other tracked values (`diagnostics`), and whether it mines (has
    L_coseg: `mines`, which the mining-precision metric reads);
  - which passes of the network it needs (`passes`): each pass is ONE call of the
    network over the concatenation of some views, in training or inference mode, with
    or without gradient;
  - how it computes its terms from the passes' outputs (`compute`).

`coseg_tf.trainer.CosegTrainer` runs the passes and calls `compute`; it knows no
method by name. Hyper-parameters are constructor arguments named as the training flags
(`HYPERPARAMETERS`; "mining" is the `losses.MiningOptions` of the --mining_* flags).

Views. Every view is a batch of {"image" [B, H, W, 3], "human_region" [B, H, W, 1]}:
  "labeled"             the labeled images;
  "weak"                the unlabeled images as the pipeline crops them (the weak view);
  "strong", "strong_2"  their strong views (`pipelines.augment.strong_view`: the same
                        crop with photometric changes) with CutMix applied within the
                        replica's batch (`pipelines.augment.cutmix`, partner
                        `cutmix_partner`): image and region mixed in the same box.
Outputs of a pass: {view: {"logits" [B, h, w, C], "masked_features" [B, h, w, F]}}.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from coseg_tf import losses as losses_lib
from coseg_tf import masking
from pipelines import augment, streams

# Pass modes: TRAIN follows the step (dropout on in a training step, off when the
# losses are evaluated); INFERENCE is always inference mode (no dropout).
TRAIN = "train"
INFERENCE = "inference"
MODES = (TRAIN, INFERENCE)

LABELED = "labeled"
WEAK = "weak"
# The strong views, in the order of `streams.STRONG_VIEW_KEYS`.
STRONG_VIEWS = ("strong", "strong_2")
VIEWS = (LABELED, WEAK) + STRONG_VIEWS


@dataclasses.dataclass(frozen=True)
class Pass:
    """One call of the network over the concatenation of `views`, split again after.

    Args:
      views: view names (VIEWS), concatenated in this order.
      mode: TRAIN (the step's training flag) or INFERENCE (always inference mode).
      gradient: False: the outputs are constants (`tf.stop_gradient`), a teacher.
      perturbed: views whose encoder features get channel dropout of rate
        `feature_dropout` before the head (UniMatch's feature perturbation;
        `coseg_tf.model.encoder_and_head`), in a training step only.
      feature_dropout: that rate, in [0, 1).
    """

    views: tuple
    mode: str = TRAIN
    gradient: bool = True
    perturbed: tuple = ()
    feature_dropout: float = 0.0

    def __post_init__(self):
        unknown = [v for v in self.views + self.perturbed if v not in VIEWS]
        if unknown or not self.views:
            raise ValueError(f"Pass: views must be among {VIEWS}, got {self.views} "
                             f"(perturbed {self.perturbed})")
        if not set(self.perturbed) <= set(self.views):
            raise ValueError(f"Pass: perturbed views {self.perturbed} are not in the "
                             f"pass's views {self.views}")
        if self.mode not in MODES:
            raise ValueError(f"Pass: mode must be one of {MODES}, got {self.mode!r}")
        check_range("feature_dropout", self.feature_dropout, 0.0, 1.0, high_open=True)


def check_range(name, value, low, high=None, *, low_open=False, high_open=False):
    """`value` as a float; ValueError naming `name` (the flag) when out of range."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    bad_low = value <= low if low_open else value < low
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high or value != value:
        interval = (("(" if low_open else "[") + f"{low:g}, "
                    + (f"{high:g}" + (")" if high_open else "]") if high is not None
                       else "inf)"))
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return value


def view_inputs(data, view):
    """{"image", "human_region"} of a view of the element `data` (the views above).

    The strong views are mixed here, within the batch this replica holds: inside its
    CutMix box, image i shows image `augment.cutmix_partner(B)[i]`, and its region is
    that image's region there.
    """
    if view == LABELED:
        part = data["labeled"]
        return {"image": part["image"], "human_region": part["human_region"]}
    unlabeled = data["unlabeled"]
    if view == WEAK:
        return {"image": unlabeled["image"], "human_region": unlabeled["human_region"]}
    image_key, box_key = streams.STRONG_VIEW_KEYS[STRONG_VIEWS.index(view)]
    mixed = augment.cutmix({"image": unlabeled[image_key],
                            "human_region": unlabeled["human_region"]},
                           unlabeled[box_key], cutmix_partner(unlabeled))
    return mixed


def cutmix_partner(unlabeled):
    """int32 [B_u]: the CutMix partners of this replica's unlabeled images."""
    return augment.cutmix_partner(tf.shape(unlabeled["human_region"])[0])


def feature_region(region, size):
    """float32 [B, h, w]: a region map brought to the feature grid, as the masking
    layer brings it (`masking.resize_region`)."""
    return tf.cast(masking.resize_region(region, size), tf.float32)[..., 0]


def labeled_targets(output, data, *, num_classes, ignore_label):
    """(L_humanparts, labels at feature resolution [B_f, h, w], size (h, w)) of the
    labeled view's output."""
    logits = output["logits"]
    size = tf.shape(logits)[1:3]
    labels = losses_lib.downsample_labels(labels=data["labeled"]["labels"], size=size)
    humanparts = losses_lib.humanparts_loss(logits=logits, labels=labels,
                                            num_classes=num_classes,
                                            ignore_label=ignore_label)
    return humanparts, labels, size


class Objective:
    """A training method: its needs, passes, terms, weights and trackers.

    Subclasses set the class attributes and implement `weights`, `passes` and
    `compute`; `objectives.REGISTRY` lists them by `name`.

    Class attributes:
      name: the --method value.
      summary: one line for --help.
      needs: `streams.StreamNeeds` of the method.
      HYPERPARAMETERS: constructor arguments, named as the training flags.
      diagnostics: names of the tracked values `compute` returns beside the terms
        (ratios: means over the steps where they are defined, NaN for 0 / 0 and left
        out, `metrics.DefinedMean`; never part of the loss).
      mines: the method has L_coseg (reads `losses.MiningOptions`; the mining-precision
        metric applies).
    """

    name = None
    summary = ""
    needs = streams.StreamNeeds(unlabeled=False)
    HYPERPARAMETERS = ()
    diagnostics = ()
    mines = False

    # === What the method is ===
    def weights(self):
        """{term: weight}, "humanparts" first; the total loss is their weighted sum."""
        raise NotImplementedError

    def passes(self, training):
        """{pass name: `Pass`}: the network calls `compute` reads.

        Args:
          training: whether this is a training step (a pass may be needed only then).
        """
        raise NotImplementedError

    def compute(self, outputs, data, *, num_classes, ignore_label, training):
        """The loss terms (and diagnostics) of one replica's element.

        Args:
          outputs: {pass name: {view: {"logits", "masked_features"}}} of `passes`.
          data: the element ({"labeled": ..., "unlabeled": ...}).
          num_classes, ignore_label: of the part scheme.
          training: whether this is a training step.

        Returns:
          (values, aux): values {term or diagnostic: float32 scalar}, every term of
          `weights()` and every name of `diagnostics`; aux the mining details
          (`losses.coseg_loss`'s aux plus "region_unlabeled" and "size") of a mining
          method, else None.
        """
        raise NotImplementedError

    # === Shared ===
    def total(self, values):
        """The loss: the weighted sum of the terms."""
        return tf.add_n([weight * values[term] for term, weight in self.weights().items()])

    def get_config(self):
        config = {}
        for name in self.HYPERPARAMETERS:
            value = getattr(self, name)
            config[name] = (dataclasses.asdict(value) if dataclasses.is_dataclass(value)
                            else value)
        return config

    def check_element(self, data):
        """Raises ValueError when the element lacks what the method needs, or carries
        image-level labels the method must not read."""
        unlabeled = data.get("unlabeled")
        if unlabeled is not None and "image_labels" in unlabeled \
                and not self.needs.image_labels:
            raise ValueError(f"method {self.name!r} must not see image-level labels, but "
                             "the unlabeled stream carries 'image_labels'")
        if not self.needs.unlabeled:
            return
        if unlabeled is None:
            raise ValueError(f"method {self.name!r} needs an 'unlabeled' stream in each "
                             "element")
        if self.needs.image_labels and "image_labels" not in unlabeled:
            raise ValueError(f"method {self.name!r} needs 'image_labels' in the unlabeled "
                             "stream (the pipeline's image_labels switch)")
        for image_key, box_key in streams.STRONG_VIEW_KEYS[:self.needs.strong_views]:
            for key in (image_key, box_key):
                if key not in unlabeled:
                    raise ValueError(
                        f"method {self.name!r} needs {key!r} in the unlabeled stream "
                        f"(streams.StreamNeeds(strong_views={self.needs.strong_views}))")

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
