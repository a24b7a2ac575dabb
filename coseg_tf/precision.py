"""Mixed precision for training: the Keras policy of each choice, and loss scaling.

    --mixed_precision   Keras dtype policy   variables   compute    loss scaling
    off                 float32              float32     float32    none
    float16             mixed_float16        float32     float16    dynamic
    bfloat16            mixed_bfloat16       float32     bfloat16   none (float32's range)
    auto                bfloat16 where the CPU computes it natively and no GPU is
                        visible, else off (`resolve`; the CPU recipe's choice)

Under either mixed policy the variables stay float32 (the optimizer updates float32
master weights) and each layer casts them to its compute dtype; the masking layer and
fc8 run in float32 (`coseg_tf.model`), so the masked features, the logits and every
loss are float32. Checkpoints therefore hold the same float32 variables whatever the
precision, and a network trained under one precision loads into a network built under
any other.

Loss scaling (float16 only; Micikevicius et al., "Mixed Precision Training", ICLR 2018):
the loss is multiplied by a scale S before the backward pass so that small float16
gradients do not flush to zero; the float32 gradients are divided by S before the
update. S starts at 2^15, halves at every step whose gradients hold an Inf or NaN (the
step is skipped: no variable changes) and doubles after 2000 finite steps in a row.
This is Keras' `LossScaleOptimizer`; `SyncedLossScaleOptimizer` adds two things:

1. **Replicas agree on skipping.** Keras 3.15 decides "finite or not" on each
   replica's own gradients (keras-team/keras#18691 assumes they are already
   all-reduced; they are not). Under `MirroredStrategy` a replica whose gradients are
   finite then applies the all-reduced update, Inf included, and the weights become
   Inf (measured here with 2 logical CPUs). Here the replicas all-reduce the decision
   first, so all skip together.
2. **`iterations` counts every train step**, skipped ones included (the wrapped
   optimizer's `iterations` counts applied updates, and drives the learning-rate
   schedule). The run directory's step bookkeeping (`coseg_tf.train_lib`: backups,
   resume, DONE) reads `optimizer.iterations` and needs the steps run.

The custom train step (`coseg_tf.trainer.CosegTrainer.train_step`) scales the loss with
`optimizer.scale_loss` (the identity for other optimizers) and gives the weight decay
it adds to the gradients the same scale.

Also here: the CPU's instruction-set flags (`cpu_flags`) and whether it computes
bfloat16 natively (`has_native_bfloat16`), printed by tools/bench.py beside its ratios.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# --mixed_precision choices -> Keras dtype policy names.
POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
MIXED_PRECISION = tuple(POLICIES)
# The flag's choices: a policy, or "auto" (`resolve` picks one for this machine).
AUTO = "auto"
CHOICES = MIXED_PRECISION + (AUTO,)
# Keras' defaults (LossScaleOptimizer), stated once for the docs.
INITIAL_LOSS_SCALE = 2.0 ** 15
DYNAMIC_GROWTH_STEPS = 2000
# /proc/cpuinfo flags of native bfloat16 arithmetic: AVX512-BF16 (dot products and
# conversions) and AMX-BF16 (tile matrix multiplies), what oneDNN uses for bfloat16.
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
# Flags printed beside the bench's ratios (those that decide TF's CPU kernels).
REPORTED_CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni",
                      "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def policy_name(mixed_precision: str) -> str:
    """The Keras dtype policy of a --mixed_precision choice ("off" -> "float32").

    Raises:
      ValueError: not one of MIXED_PRECISION.
    """
    if mixed_precision not in POLICIES:
        raise ValueError(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, "
                         f"got {mixed_precision!r}")
    return POLICIES[mixed_precision]


def resolve(mixed_precision: str, *, cpuinfo_text=None, gpu_visible=None) -> str:
    """The precision a --mixed_precision choice means on this machine.

    "auto" is "bfloat16" on a CPU-only machine whose CPU computes bfloat16 natively
    (`has_native_bfloat16`: AVX512-BF16 or AMX-BF16), where oneDNN's bfloat16 kernels
    made the demo recipe's step 1.7x faster than float32 (docs/PERFORMANCE.md,
    "Mixed precision"), and "off" everywhere else: on CPUs without it bfloat16 is
    emulated and much slower, and on a GPU the choice (float16 or bfloat16, with which
    loss scaling) is the user's. Every other choice is returned as it is.

    Args:
      mixed_precision: one of CHOICES.
      cpuinfo_text: the text of /proc/cpuinfo (None reads the file).
      gpu_visible: whether TensorFlow sees a GPU (None asks it).

    Returns:
      One of MIXED_PRECISION.

    Raises:
      ValueError: not one of CHOICES.
    """
    if mixed_precision not in CHOICES:
        raise ValueError(f"mixed_precision must be one of {', '.join(CHOICES)}, "
                         f"got {mixed_precision!r}")
    if mixed_precision != AUTO:
        return mixed_precision
    if gpu_visible is None:
        gpu_visible = bool(tf.config.list_physical_devices("GPU"))
    if gpu_visible or not has_native_bfloat16(cpu_flags(cpuinfo_text)):
        return "off"
    return "bfloat16"


@keras.saving.register_keras_serializable(package="coseg_tf")
class SyncedLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' dynamic `LossScaleOptimizer` made safe under `MirroredStrategy`.

    Every replica computes whether its own gradients are all finite; the replicas
    all-reduce that and, when any replica saw an Inf or NaN, every replica hands
    non-finite gradients to Keras' logic, so all of them skip the step and halve the
    scale together. `iterations` counts train steps, applied or skipped; the wrapped
    optimizer's `inner_optimizer.iterations` counts applied updates (and drives its
    learning-rate schedule). See the module docstring.

    Args:
      inner_optimizer: the optimizer that makes the updates (e.g. SGD).
      initial_scale: the first loss scale.
      dynamic_growth_steps: finite steps in a row after which the scale doubles.
      **kwargs: as `keras.optimizers.LossScaleOptimizer` (`name`).

    Example:

    >>> optimizer = SyncedLossScaleOptimizer(keras.optimizers.SGD(1e-3, momentum=0.9))
    >>> trainer.compile(optimizer=optimizer)   # train_step calls optimizer.scale_loss
    """

    def __init__(self, inner_optimizer, initial_scale=INITIAL_LOSS_SCALE,
                 dynamic_growth_steps=DYNAMIC_GROWTH_STEPS, **kwargs):
        super().__init__(inner_optimizer, initial_scale=initial_scale,
                         dynamic_growth_steps=dynamic_growth_steps, **kwargs)

    @property
    def iterations(self):
        # The base optimizer's own counter, saved with the optimizer's variables.
        return self._iterations

    @property
    def applied_steps(self):
        """The updates actually applied (skipped steps left out)."""
        return self.inner_optimizer.iterations

    def apply(self, grads, trainable_variables=None):
        finite = self.check_finite(grads)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            # The number of replicas that saw an Inf or NaN (ReduceOp has no MIN).
            bad = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                     1.0 - tf.cast(finite, tf.float32))
            finite = tf.equal(bad, 0.0)
        # NaN * 0 is NaN and x * 1 is x: the gradients of a step that some replica
        # found non-finite become non-finite on every replica.
        poison = tf.where(finite, 1.0, float("nan"))
        grads = [None if g is None else g * tf.cast(poison, g.dtype) for g in grads]
        super().apply(grads, trainable_variables)
        self._iterations.assign_add(1)


def wrap_optimizer(optimizer, mixed_precision: str):
    """`optimizer` wrapped for `mixed_precision`: loss scaling for float16 only."""
    policy_name(mixed_precision)  # validates
    if mixed_precision == "float16":
        return SyncedLossScaleOptimizer(optimizer)
    return optimizer


# === The CPU ===

def read_cpuinfo(cpuinfo_text=None) -> dict:
    """{key: value} of the first processor in /proc/cpuinfo ("model name", "flags", ...).

    Args:
      cpuinfo_text: the text of /proc/cpuinfo; None reads the file ({} where there is
        none, e.g. not Linux).
    """
    if cpuinfo_text is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo_text = f.read()
        except OSError:
            return {}
    info = {}
    for line in cpuinfo_text.splitlines():
        if not line.strip():
            if info:
                break  # the first processor's block ends
            continue
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def cpu_flags(cpuinfo_text=None) -> frozenset:
    """The instruction-set flags of the CPU, as /proc/cpuinfo lists them.

    Args:
      cpuinfo_text: the text of /proc/cpuinfo; None reads the file (an empty set where
        there is none, e.g. not Linux).

    Returns:
      The flags of the first processor (every core of a machine lists the same).
    """
    return frozenset(read_cpuinfo(cpuinfo_text).get("flags", "").split())


def has_native_bfloat16(flags) -> bool:
    """Whether a CPU with these /proc/cpuinfo flags computes bfloat16 natively.

    True with AVX512-BF16 or AMX-BF16 (NATIVE_BFLOAT16_FLAGS); without them TensorFlow
    emulates bfloat16 in float32 and a mixed_bfloat16 step is much slower than float32
    (11-12x on this project's AVX2 machine, docs/PERFORMANCE.md).
    """
    return any(flag in flags for flag in NATIVE_BFLOAT16_FLAGS)
