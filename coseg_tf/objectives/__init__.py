"""Training methods as objectives, and the registry every caller reads.

official/vision keeps `losses/` (pure functions) apart from `tasks/` (what a training
run computes); here the losses are `coseg_tf.losses`, `image_label_losses` and
`consistency_losses`, and the methods are the objectives below (`base.Objective`: the
streams each needs, its passes of the network, its terms, weights and trackers).
`train_lib`, the --method flag, tools/sweep.py and tools/bench.py read `REGISTRY`.

Adding a method: one module here with its `Objective` subclass, its line in
`_OBJECTIVES`, and its test (tests/test_objectives.py; the mirrored-vs-single-device
check, tests/mirrored_step_check.py, runs every registered method). New hyper-parameters
also need their training flags (flags/train.py, `train_lib.TrainConfig`).
"""

from __future__ import annotations

from coseg_tf.objectives import base
from coseg_tf.objectives.coseg import Coseg
from coseg_tf.objectives.coseg_consistency import CosegFixMatch, CosegUniMatch
from coseg_tf.objectives.em_adapt import EmAdapt
from coseg_tf.objectives.fixmatch import FixMatch
from coseg_tf.objectives.gmp import Gmp
from coseg_tf.objectives.supervised import Supervised
from coseg_tf.objectives.unimatch import UniMatch

Objective = base.Objective

_OBJECTIVES = (Supervised, Coseg, Gmp, EmAdapt, FixMatch, UniMatch, CosegFixMatch,
               CosegUniMatch)
# --method value -> Objective subclass
REGISTRY = {cls.name: cls for cls in _OBJECTIVES}
METHODS = tuple(REGISTRY)


def get(method):
    """The `Objective` subclass of `method`; ValueError naming the choices."""
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return REGISTRY[method]


def build(method, **hyperparameters):
    """The objective of `method` with the hyper-parameters it takes among those given.

    Any value its class does not take (`HYPERPARAMETERS`) is left out, so one call
    serves every method: `build(config.method, alpha=..., unlabeled_weight=..., ...)`.

    Raises:
      ValueError: an unknown method or a value out of range (naming the flag).
    """
    cls = get(method)
    return cls(**{k: v for k, v in hyperparameters.items() if k in cls.HYPERPARAMETERS})


def from_config(config):
    """An objective from {"method": name, "config": get_config()}."""
    return get(config["method"])(**config.get("config", {}))


def to_config(objective):
    """{"method", "config"} of an objective (what `from_config` reads)."""
    return {"method": objective.name, "config": objective.get_config()}
