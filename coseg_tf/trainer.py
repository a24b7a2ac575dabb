"""The training model: a `keras.Model` whose `train_step` runs the network and a method's
objective.

`CosegTrainer` wraps the functional DeepLab-LargeFOV network (`coseg_tf.model`) and
overrides `train_step` / `test_step` the Keras 3 way (trackers made in `__init__`, a
`metrics` property, `self.optimizer.apply(grads, vars)`, a dict of results). Keras
runs both under `tf.function`.

A training element is the dict the input pipeline builds (`pipelines.streams`):

    {"labeled":   {"image": [B_f,H,W,3], "human_region": [B_f,H,W,1], "labels": [B_f,H,W]},
     "unlabeled": {"image": [B_u,H,W,3], "human_region": [B_u,H,W,1]
                   (+ "diagnostic_labels": [B_u,H,W] when diagnostics are on)
                   (+ "image_labels", "strong_image", "cutmix_box", ... as the
                   method's `StreamNeeds` ask)}}

with global batch sizes; under `MirroredStrategy` each replica receives B_f labeled
and B_u unlabeled images and computes its method's terms on them alone (coseg mines
its targets, CutMix picks its partners, among that replica's unlabeled images).

Methods are objectives (`coseg_tf.objectives`, DESIGN §3): what each needs from the
streams, the passes of the network it reads, its terms and weights, its trackers.
`compute_losses` checks the element against the objective's needs, runs its passes
(`run_pass`: one network call over the concatenated views of a pass, in training or
inference mode, with or without gradient, with UniMatch's feature perturbation where
asked) and lets the objective compute its terms; the loss is their weighted sum. No
method is named here. A method that does not read image-level labels refuses an
element that carries them, so that they can never leak into its step.

Optimisation follows the paper's Caffe setting: SGD with momentum, weight decay added
to the gradient of every kernel (Caffe's `weight_decay`: g + wd * w), and fc8's
gradients multiplied by `fc8_lr_multiplier` (10), which for SGD with momentum is
exactly Caffe's `lr_mult` (the update is linear in the gradient).

Mixed precision (`coseg_tf.precision`): the network's outputs and so every loss are
float32 under any policy. Under mixed_float16 the optimizer is a loss-scale optimizer:
`train_step` multiplies the loss by `optimizer.scale_loss` (the identity otherwise),
gives the weight decay the same factor, and the optimizer divides it out of the
gradients, or skips the step when they are not finite.

Mining precision (a diagnostic only, never an input of a loss): for a method that
mines (coseg and its combinations), when the unlabeled batch carries
"diagnostic_labels" (the hidden labels of the synthetic set), the share of mined
positions whose true class is the class they were mined for, and beside it the share
that positions picked at random inside the target's human region would give
("mining_chance").
"""

from __future__ import annotations

import keras
import tensorflow as tf

from coseg_tf import losses as losses_lib
from coseg_tf import metrics as metrics_lib
from coseg_tf import model as model_lib
from coseg_tf import objectives
from coseg_tf.objectives import base as objective_base

# The --method choices: the registry's.
METHODS = objectives.METHODS


class _NetworkRunner:
    """Runs the network over the concatenated views of an `objectives.base.Pass`.

    Holds, for an objective that perturbs features, the encoder/head split of the
    network (`model.encoder_and_head`): two models sharing the network's layers, with
    no variable of their own, so a trainer's checkpoint has the same variables
    whatever its method (tests/test_objectives.py loads a unimatch checkpoint into a
    supervised trainer).
    """

    def __init__(self, network, perturbs):
        self.network = network
        self.encoder = self.head = None
        if perturbs:
            self.encoder, self.head = model_lib.encoder_and_head(network)

    def __call__(self, spec, inputs, training):
        """{view: {"logits", "masked_features"}} of one pass.

        Args:
          spec: the `Pass`.
          inputs: {view: {"image", "human_region"}} (`objectives.base.view_inputs`).
          training: the step's training flag (a TRAIN pass follows it).
        """
        mode = training if spec.mode == objective_base.TRAIN else False
        images = [inputs[v]["image"] for v in spec.views]
        regions = [inputs[v]["human_region"] for v in spec.views]
        sizes = [tf.shape(x)[0] for x in images]
        # One call over the concatenated views: the network has no batch statistics,
        # so this equals one call per view and costs one.
        image = tf.concat(images, axis=0) if len(images) > 1 else images[0]
        region = tf.concat(regions, axis=0) if len(regions) > 1 else regions[0]
        if spec.perturbed and mode:
            features = self.encoder({"image": image, "human_region": region},
                                    training=mode)
            features = features * self._channel_dropout(spec, sizes, features)
            out = self.head([features, region], training=mode)
        else:
            out = self.network({"image": image, "human_region": region}, training=mode)
        out = {"logits": out["logits"], "masked_features": out["masked_features"]}
        if not spec.gradient:
            out = tf.nest.map_structure(tf.stop_gradient, out)
        if len(spec.views) == 1:
            return {spec.views[0]: out}
        parts = {k: tf.split(t, sizes, axis=0) for k, t in out.items()}
        return {v: {k: parts[k][i] for k in parts} for i, v in enumerate(spec.views)}

    @staticmethod
    def _channel_dropout(spec, sizes, features):
        """[N, 1, 1, F] multipliers: channel dropout (nn.Dropout2d: a channel of an
        image is dropped whole, the rest scaled by 1 / keep) on the perturbed views'
        rows, 1 on the others."""
        keep = 1.0 - spec.feature_dropout
        rows = []
        for view, n in zip(spec.views, sizes):
            shape = tf.stack([n, 1, 1, tf.shape(features)[-1]])
            if view in spec.perturbed:
                kept = tf.cast(tf.random.uniform(shape) < keep, features.dtype)
                rows.append(kept / tf.cast(keep, features.dtype))
            else:
                rows.append(tf.ones(shape, features.dtype))
        return tf.concat(rows, axis=0)


class CosegTrainer(keras.Model):
    """Trains a segmentation network with a method's objective (`coseg_tf.objectives`).

    Args:
      network: the functional model of `coseg_tf.model.build_deeplab_largefov`:
        inputs {"image", "human_region"}, outputs {"logits", "masked_features"}.
      num_classes: number of classes of the part scheme (background included).
      objective: a `coseg_tf.objectives.Objective`, a method name (its objective with
        the default hyper-parameters: `objectives.build`), or its config
        (`objectives.to_config`).
      weight_decay: L2 factor added to the gradient of every kernel.
      fc8_lr_multiplier: learning-rate multiplier of the classifier (fc8) variables.
      class_names: names of the classes, for the per-class mining-precision metrics.
      ignore_label: label value that no loss reads.
      mining_metrics: track mining precision for a method that mines (needs
        "diagnostic_labels" in the unlabeled stream: the pipeline's diagnostics
        switch); ignored for the others.
      **kwargs: forwarded to `keras.Model`.

    Example:

    >>> net = build_deeplab_largefov(num_classes=3, width_multiplier=0.25)
    >>> trainer = CosegTrainer(net, num_classes=3,
    ...                        objective=objectives.build("coseg", alpha=1.0, beta=1.0))
    >>> trainer.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    >>> trainer.fit(train_ds, steps_per_epoch=100, epochs=10)
    """

    def __init__(self, network, *, num_classes, objective="coseg", weight_decay=5e-4,
                 fc8_lr_multiplier=10.0, class_names=None, ignore_label=255,
                 mining_metrics=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(objective, str):
            objective = objectives.build(objective)
        elif isinstance(objective, dict):  # from get_config
            objective = objectives.from_config(objective)
        if not isinstance(objective, objectives.Objective):
            raise TypeError(f"objective must be a coseg_tf.objectives.Objective, a method "
                            f"name or its config, got {objective!r}")
        self.network = network
        self.num_classes = int(num_classes)
        self.objective = objective
        self.method = objective.name
        self.weight_decay = float(weight_decay)
        self.fc8_lr_multiplier = float(fc8_lr_multiplier)
        self.ignore_label = int(ignore_label)
        self.mining_metrics = bool(mining_metrics) and objective.mines
        self.class_names = list(class_names or [f"class_{c}" for c in range(num_classes)])
        perturbs = any(p.perturbed for t in (True, False)
                       for p in objective.passes(t).values())
        self._runner = _NetworkRunner(network, perturbs)

        # === Trackers ===
        # One Mean per loss term, the total and each diagnostic of the objective.
        names = ["loss", *objective.weights(), *objective.diagnostics]
        mining = []
        if self.mining_metrics:
            mining = ["mining_precision", "mining_chance"]
            mining += [f"mining_precision/{n}" for n in self.class_names[1:]]
            names += mining
        # Ratios that are 0 / 0 for an interval with nothing to count (nothing mined, no
        # region) are undefined there: NaN, never 0 (losses stay plain means).
        ratios = set(mining) | set(objective.diagnostics)
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

    # === Passes and losses ===
    def run_pass(self, spec, data, training):
        """{view: {"logits", "masked_features"}} of one `Pass` of the objective."""
        inputs = {v: objective_base.view_inputs(data, v) for v in spec.views}
        return self._runner(spec, inputs, training)

    def compute_losses(self, data, training):
        """Per-replica loss terms (means over this replica's images), their weighted sum
        "loss", the objective's diagnostics, and the mining details (or None)."""
        self.objective.check_element(data)
        outputs = {name: self.run_pass(spec, data, training)
                   for name, spec in self.objective.passes(training).items()}
        result, aux = self.objective.compute(outputs, data, num_classes=self.num_classes,
                                             ignore_label=self.ignore_label,
                                             training=training)
        result = dict(result, loss=self.objective.total(result))
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
            "num_classes": self.num_classes,
            "objective": objectives.to_config(self.objective),
            "weight_decay": self.weight_decay,
            "fc8_lr_multiplier": self.fc8_lr_multiplier,
            "class_names": self.class_names, "ignore_label": self.ignore_label,
            "mining_metrics": self.mining_metrics,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)
