"""Choosing the `tf.distribute` strategy of a run.

  default       no distribution: one device (the first GPU if any, else the CPU).
  mirrored      `MirroredStrategy` over all visible GPUs (the CPU when there is none).
  multi_worker  `MultiWorkerMirroredStrategy`; the cluster comes from `TF_CONFIG`.

On a machine without GPUs, `num_cpu_devices > 1` splits the CPU into that many logical
devices first, so that `mirrored` runs real replicas (tests and CPU demos use it).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def split_cpu(num_devices: int) -> None:
    """Splits the physical CPU into `num_devices` logical devices (before any TF op)."""
    if num_devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == num_devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
    except RuntimeError as e:  # TF already initialised its devices
        raise RuntimeError(
            f"cannot split the CPU into {num_devices} devices: TensorFlow is already "
            "initialised; split before building any tensor") from e


def make_strategy(name: str = "mirrored", *, num_cpu_devices: int = 0):
    """The strategy called `name` (see the module docstring)."""
    if name not in STRATEGIES:
        raise ValueError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}")
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment "
                             "variable (cluster spec and this worker's task)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    if not tf.config.list_physical_devices("GPU"):
        split_cpu(num_cpu_devices)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    cpus = tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in cpus])
