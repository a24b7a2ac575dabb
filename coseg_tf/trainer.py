"""The training model: a `keras.Model` whose `train_step` computes the coseg losses.

`CosegTrainer` wraps the functional DeepLab-LargeFOV network (`coseg_tf.model`) and
overrides `train_step` / `test_step` the Keras 3 way (trackers made in `__init__`, a
`metrics` property, `self.optimizer.apply(grads, vars)`, a dict of results). Keras
runs both under `tf.function`.

A training element is the dict the input pipeline builds (`pipelines.streams`):

    {"labeled":   {"image": [B_f,H,W,3], "human_region": [B_f,H,W,1], "labels": [B_f,H,W]},
     "unlabeled": {"image": [B_u,H,W,3], "human_region": [B_u,H,W,1]
                   (+ "diagnostic_labels": [B_u,H,W] when diagnostics are on)}}

with global batch sizes (the image-label methods' unlabeled stream also carries
"image_labels": [B_u, C]); under `MirroredStrategy` each replica receives B_f labeled
and B_u unlabeled images and mines its own targets among its own unlabeled images.

Methods (DESIGN §3):
  supervised: L_humanparts on the labeled images (the paper's baselines (a) and (c)).
  coseg:      L_all = L_humanparts + alpha L_human + beta L_coseg (the paper's (b)).
  gmp:        L_humanparts + w L_gmp, Global Max Pooling against the unlabeled images'
              image-level labels (a Table 2 baseline; `coseg_tf.image_label_losses`).
  em_adapt:   L_humanparts + w L_em, EM-Adapt's E-step pseudo labels from adaptive
              biases and an M-step cross entropy (a Table 2 baseline).
Only gmp and em_adapt read image-level labels; the other methods refuse an element
that carries them, so that they can never leak into a coseg or supervised step.

Optimisation follows the paper's Caffe setting: SGD with momentum, weight decay added
to the gradient of every kernel (Caffe's `weight_decay`: g + wd * w), and fc8's
gradients multiplied by `fc8_lr_multiplier` (10), which for SGD with momentum is
exactly Caffe's `lr_mult` (the update is linear in the gradient).

Mixed precision (`coseg_tf.precision`): the network's outputs and so every loss are
float32 under any policy. Under mixed_float16 the optimizer is a loss-scale optimizer:
`train_step` multiplies the loss by `optimizer.scale_loss` (the identity otherwise),
gives the weight decay the same factor, and the optimizer divides it out of the
gradients, or skips the step when they are not finite.

Mining precision (a diagnostic only, never an input of a loss): when the unlabeled
batch carries "diagnostic_labels" (the hidden labels of the synthetic set), the share
of mined positions whose true class is the class they were mined for, and beside it
the share that positions picked at random inside the target's human region would give
("mining_chance").
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from coseg_tf import image_label_losses
from coseg_tf import losses as losses_lib
from coseg_tf import masking
from coseg_tf import metrics as metrics_lib

METHODS = ("supervised", "coseg", "gmp", "em_adapt")
# Methods that read the unlabeled images' image-level labels ("image_labels").
IMAGE_LABEL_METHODS = ("gmp", "em_adapt")
# Methods that train on the unlabeled stream at all.
UNLABELED_METHODS = ("coseg",) + IMAGE_LABEL_METHODS


class CosegTrainer(keras.Model):
    """Trains a segmentation network with the supervised or the cosegmentation losses.

    Args:
      network: the functional model of `coseg_tf.model.build_deeplab_largefov`:
        inputs {"image", "human_region"}, outputs {"logits", "masked_features"}.
      num_classes: number of classes of the part scheme (background included).
      method: one of METHODS.
      alpha: weight of L_human (coseg only).
      beta: weight of L_coseg (coseg only).
      image_label_weight: weight of L_gmp / L_em (gmp and em_adapt only).
      em_fg_share, em_bg_share: EM-Adapt's shares of the human region for each present
        foreground class and for the background (em_adapt only).
      weight_decay: L2 factor added to the gradient of every kernel.
      fc8_lr_multiplier: learning-rate multiplier of the classifier (fc8) variables.
      class_names: names of the classes, for the per-class mining-precision metrics.
      ignore_label: label value that no loss reads.
      mining_metrics: track mining precision (needs "diagnostic_labels" in the
        unlabeled stream: the pipeline's diagnostics switch).
      mining: `losses.MiningOptions` of L_coseg (coseg only; default the paper's).
        With features="inference" each training step runs a second, inference-mode
        pass (no dropout, no gradient) whose features, class points and predictions
        the mining reads.
      **kwargs: forwarded to `keras.Model`.

    Example:

    >>> net = build_deeplab_largefov(num_classes=3, width_multiplier=0.25)
    >>> trainer = CosegTrainer(net, num_classes=3, method="coseg")
    >>> trainer.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    >>> trainer.fit(train_ds, steps_per_epoch=100, epochs=10)
    """

    def __init__(self, network, *, num_classes, method="coseg", alpha=0.001, beta=0.001,
                 weight_decay=5e-4, fc8_lr_multiplier=10.0, class_names=None,
                 ignore_label=255, mining_metrics=False,
                 image_label_weight=image_label_losses.DEFAULT_IMAGE_LABEL_WEIGHT,
                 em_fg_share=image_label_losses.DEFAULT_FG_SHARE,
                 em_bg_share=image_label_losses.DEFAULT_BG_SHARE,
                 mining=losses_lib.PAPER_MINING, **kwargs):
        super().__init__(**kwargs)
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
        self.network = network
        self.num_classes = int(num_classes)
        self.method = method
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.weight_decay = float(weight_decay)
        self.fc8_lr_multiplier = float(fc8_lr_multiplier)
        self.ignore_label = int(ignore_label)
        self.image_label_weight = float(image_label_weight)
        self.em_fg_share = float(em_fg_share)
        self.em_bg_share = float(em_bg_share)
        self.mining_metrics = bool(mining_metrics) and method == "coseg"
        if isinstance(mining, dict):  # from get_config
            mining = losses_lib.MiningOptions(**mining)
        if not isinstance(mining, losses_lib.MiningOptions):
            raise TypeError(f"mining must be a losses.MiningOptions, got {mining!r}")
        self.mining = mining
        self.class_names = list(class_names or [f"class_{c}" for c in range(num_classes)])

        # === Trackers ===
        names = ["loss", "humanparts"]
        if method == "coseg":
            names += ["human", "coseg"]
        elif method == "gmp":
            names += ["gmp"]
        elif method == "em_adapt":
            # em_pseudo_foreground: share of region positions the E-step gave a part.
            names += ["em_adapt", "em_pseudo_foreground"]
        mining = []
        if self.mining_metrics:
            mining = ["mining_precision", "mining_chance"]
            mining += [f"mining_precision/{n}" for n in self.class_names[1:]]
            names += mining
        # Ratios that are 0 / 0 for an interval with nothing to count (nothing mined, no
        # region) are undefined there: NaN, never 0 (losses stay plain means).
        ratios = set(mining) | {"em_pseudo_foreground"}
        self._trackers = {n: (metrics_lib.DefinedMean if n in ratios else keras.metrics.Mean)(
            name=n) for n in names}

    # === Keras plumbing ===
    @property
    def metrics(self):
        # Listed here so that Keras resets them at each epoch.
        return list(self._trackers.values())

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def build(self, input_shape=None):
        # The wrapped network is built already; nothing of our own to create.
        self.built = True

    def _fc8_variable_ids(self):
        try:
            fc8 = self.network.get_layer("fc8")
        except ValueError:
            return set()
        return {id(v) for v in fc8.trainable_variables}

    # === Forward pass and losses ===
    def _forward(self, labeled, unlabeled, training):
        """One pass of the network over labeled + unlabeled images, split again."""
        if unlabeled is None:
            out = self.network({"image": labeled["image"],
                                "human_region": labeled["human_region"]}, training=training)
            return out, None
        # One call over the concatenated batch: the network has no batch statistics,
        # so this equals two calls and costs one.
        images = tf.concat([labeled["image"], unlabeled["image"]], axis=0)
        regions = tf.concat([labeled["human_region"], unlabeled["human_region"]], axis=0)
        out = self.network({"image": images, "human_region": regions}, training=training)
        n_f = tf.shape(labeled["image"])[0]
        split = lambda t: (t[:n_f], t[n_f:])  # noqa: E731
        logits_f, logits_u = split(out["logits"])
        feats_f, feats_u = split(out["masked_features"])
        return ({"logits": logits_f, "masked_features": feats_f},
                {"logits": logits_u, "masked_features": feats_u})

    def compute_losses(self, data, training):
        """Per-replica losses (means over this replica's images) and mining details."""
        labeled = data["labeled"]
        unlabeled = data.get("unlabeled")
        if unlabeled is not None and "image_labels" in unlabeled \
                and self.method not in IMAGE_LABEL_METHODS:
            raise ValueError(f"method {self.method!r} must not see image-level labels, but "
                             "the unlabeled stream carries 'image_labels'")
        if self.method not in UNLABELED_METHODS:
            unlabeled = None
        elif unlabeled is None:
            raise ValueError(f"method {self.method!r} needs an 'unlabeled' stream in each "
                             "element")
        elif self.method in IMAGE_LABEL_METHODS and "image_labels" not in unlabeled:
            raise ValueError(f"method {self.method!r} needs 'image_labels' in the unlabeled "
                             "stream (the pipeline's image_labels switch)")
        out_f, out_u = self._forward(labeled, unlabeled, training)

        # [B_f, h, w, C]
        logits_f = out_f["logits"]
        size = tf.shape(logits_f)[1:3]
        # [B_f, h, w] labels at feature resolution (nearest, on the stride-8 grid)
        labels_f = losses_lib.downsample_labels(labels=labeled["labels"], size=size)
        result = {"humanparts": losses_lib.humanparts_loss(
            logits=logits_f, labels=labels_f, num_classes=self.num_classes,
            ignore_label=self.ignore_label)}
        if out_u is None:
            result["loss"] = result["humanparts"]
            return result, None

        # [B_u, h, w] the unlabeled images' own human regions at feature resolution,
        # resized exactly as the masking layer resizes them.
        region_u = masking.resize_region(unlabeled["human_region"], size)[..., 0]
        if self.method == "gmp":
            result["gmp"] = image_label_losses.gmp_loss(
                logits=out_u["logits"], region=region_u,
                image_labels=unlabeled["image_labels"])
            result["loss"] = result["humanparts"] + self.image_label_weight * result["gmp"]
            return result, None
        if self.method == "em_adapt":
            pseudo = image_label_losses.em_adapt_pseudo_labels(
                logits=out_u["logits"], region=region_u,
                image_labels=unlabeled["image_labels"], fg_share=self.em_fg_share,
                bg_share=self.em_bg_share)
            result["em_adapt"] = image_label_losses.em_adapt_loss(
                logits=out_u["logits"], pseudo_labels=pseudo)
            result["loss"] = (result["humanparts"]
                              + self.image_label_weight * result["em_adapt"])
            foreground = tf.cast(pseudo != losses_lib.BACKGROUND, tf.float32) * region_u
            # NaN (undefined, left out of the interval's mean) without any region.
            result["em_pseudo_foreground"] = (tf.reduce_sum(foreground)
                                              / tf.reduce_sum(region_u))
            return result, None

        result["human"] = losses_lib.human_loss(logits=out_u["logits"], region=region_u)
        # What the mining reads: this pass (the paper), or a second pass in inference
        # mode (no dropout; no gradient flows through it).
        mine_f, mine_u = out_f, out_u
        if training and self.mining.features == "inference":
            mine_f, mine_u = tf.nest.map_structure(
                tf.stop_gradient, self._forward(labeled, unlabeled, training=False))
        coseg, aux = losses_lib.coseg_loss(
            logits_labeled=mine_f["logits"], labels=labels_f,
            features_labeled=mine_f["masked_features"],
            logits_unlabeled=out_u["logits"],
            features_unlabeled=mine_u["masked_features"],
            region_unlabeled=region_u, num_classes=self.num_classes,
            options=self.mining, mining_logits_unlabeled=mine_u["logits"])
        result["coseg"] = coseg
        result["loss"] = (result["humanparts"] + self.alpha * result["human"]
                          + self.beta * result["coseg"])
        aux = dict(aux, region_unlabeled=region_u, size=size)
        return result, aux

    def _update_mining_metrics(self, unlabeled, aux):
        """Mining precision against the hidden labels; a metric, never a loss input."""
        if not self.mining_metrics:
            return
        if "diagnostic_labels" not in unlabeled:
            raise ValueError("mining_metrics=True needs 'diagnostic_labels' in the unlabeled "
                             "stream (turn the pipeline's diagnostics switch on)")
        size = aux["size"]
        # [B_u, h*w] hidden classes of the unlabeled images at feature resolution
        hidden = losses_lib.downsample_labels(labels=unlabeled["diagnostic_labels"],
                                              size=size)
        hidden = tf.reshape(hidden, [tf.shape(hidden)[0], -1])
        region = tf.reshape(aux["region_unlabeled"], [tf.shape(hidden)[0], -1])
        # [B_f, h*w] hidden classes and region of each labeled image's target
        hidden_t = tf.gather(hidden, aux["targets"])
        region_t = tf.gather(region, aux["targets"])
        # [B_f, C, h*w] mined positions
        mined = tf.cast(aux["mined"], tf.float32)
        classes = tf.range(self.num_classes, dtype=hidden_t.dtype)
        # [B_f, C, h*w] 1 where the hidden class of the position is the mined-for class
        hit = tf.cast(tf.equal(hidden_t[:, None, :], classes[None, :, None]), tf.float32)
        # per class: mined hits and mined count summed over labeled images, [C]
        hits_c = tf.reduce_sum(mined * hit, axis=[0, 2])
        count_c = tf.reduce_sum(mined, axis=[0, 2])
        total = tf.reduce_sum(count_c)
        self._trackers["mining_precision"].update_state(
            tf.math.divide_no_nan(tf.reduce_sum(hits_c), total), sample_weight=total)
        # chance: the share of the target's region whose hidden class is c, weighted by
        # how many positions were mined for c
        region_hit = tf.reduce_sum(hit * region_t[:, None, :], axis=2)  # [B_f, C]
        region_size = tf.reduce_sum(region_t, axis=1)[:, None]  # [B_f, 1]
        chance = tf.math.divide_no_nan(region_hit, region_size)
        chance_count = tf.reduce_sum(mined, axis=2)  # [B_f, C]
        self._trackers["mining_chance"].update_state(
            tf.math.divide_no_nan(tf.reduce_sum(chance * chance_count), total),
            sample_weight=total)
        for c, name in enumerate(self.class_names[1:], start=1):
            self._trackers[f"mining_precision/{name}"].update_state(
                tf.math.divide_no_nan(hits_c[c], count_c[c]), sample_weight=count_c[c])

    def adjust_gradients(self, grads, variables, replicas=1, loss_scale=1.0):
        """Caffe's weight decay and fc8 learning-rate multiplier, applied to gradients.

        Kernels (not biases) get `weight_decay * w` added; fc8's gradients are multiplied
        by `fc8_lr_multiplier`. The decay is part of each replica's gradient, so it is
        divided by `replicas` like the loss: the replica sum gives wd * w once. Under
        float16 loss scaling the gradients are those of the loss times `loss_scale`,
        which the optimizer divides out: the decay is multiplied by it too.
        """
        fc8_ids = self._fc8_variable_ids()
        decay = self.weight_decay / replicas * loss_scale
        adjusted = []
        for g, v in zip(grads, variables):
            if g is not None:
                if self.weight_decay and len(v.shape) > 1:  # kernels, not biases
                    g = g + tf.cast(decay, g.dtype) * v
                if id(v) in fc8_ids:
                    g = g * self.fc8_lr_multiplier
            adjusted.append(g)
        return adjusted

    # === Steps ===
    def train_step(self, data):
        with tf.GradientTape() as tape:
            result, aux = self.compute_losses(data, training=True)
            # Each replica computes the mean loss over its own images; the optimizer
            # SUMS the gradients of all replicas, so dividing by the replica count
            # makes the update the gradient of the mean over the global batch (the
            # same update as one device holding the whole global batch).
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = result["loss"] / tf.cast(replicas, result["loss"].dtype)
            # Mixed float16: times the dynamic loss scale, which the optimizer divides
            # out of the gradients (the identity for other optimizers).
            scaled = self.optimizer.scale_loss(scaled)
        variables = self.network.trainable_variables
        grads = tape.gradient(scaled, variables)
        grads = self.adjust_gradients(grads, variables, replicas,
                                      loss_scale=self.optimizer.scale_loss(1.0))
        self.optimizer.apply(grads, variables)

        for name, value in result.items():
            self._trackers[name].update_state(value)
        if aux is not None:
            self._update_mining_metrics(data["unlabeled"], aux)
        return {name: t.result() for name, t in self._trackers.items()}

    def test_step(self, data):
        """Validation: the supervised loss on labeled validation crops."""
        labeled = data["labeled"] if "labeled" in data else data
        out = self.network({"image": labeled["image"],
                            "human_region": labeled["human_region"]}, training=False)
        logits = out["logits"]
        labels = losses_lib.downsample_labels(labels=labeled["labels"],
                                              size=tf.shape(logits)[1:3])
        value = losses_lib.humanparts_loss(logits=logits, labels=labels,
                                           num_classes=self.num_classes,
                                           ignore_label=self.ignore_label)
        self._trackers["humanparts"].update_state(value)
        self._trackers["loss"].update_state(value)
        return {"loss": self._trackers["loss"].result(),
                "humanparts": self._trackers["humanparts"].result()}

    # === Config ===
    def get_config(self):
        config = super().get_config()
        config.update({
            "network": keras.saving.serialize_keras_object(self.network),
            "num_classes": self.num_classes, "method": self.method,
            "alpha": self.alpha, "beta": self.beta, "weight_decay": self.weight_decay,
            "fc8_lr_multiplier": self.fc8_lr_multiplier,
            "class_names": self.class_names, "ignore_label": self.ignore_label,
            "mining_metrics": self.mining_metrics,
            "image_label_weight": self.image_label_weight,
            "em_fg_share": self.em_fg_share, "em_bg_share": self.em_bg_share,
            "mining": dataclasses.asdict(self.mining),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)
