"""Choosing the `tf.distribute` strategy of a run.

  default       no distribution: one device (the first GPU if any, else the CPU).
  mirrored      `MirroredStrategy` over all visible GPUs (the CPU when there is none).
  multi_worker  `MultiWorkerMirroredStrategy`; the cluster comes from `TF_CONFIG`.

On a machine without GPUs, `num_cpu_devices > 1` splits the CPU into that many logical
devices first, so that `mirrored` runs real replicas (tests and CPU demos use it).

Multi-worker (docs/DISTRIBUTED.md): every worker runs the same program with its own
`TF_CONFIG`; `is_chief` tells the one worker that writes the run directory
(checkpoints, logs, backup). `make_strategy("multi_worker")` must run before TensorFlow
executes its first op (collective ops are configured at start-up).
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


def check_tf_config(text: str) -> dict:
    """The parsed `TF_CONFIG`; ValueError saying what is wrong with it.

    Expected: {"cluster": {"worker": ["host:port", ...], optional "chief": [one]},
               "task": {"type": "worker" or "chief", "index": i}}.
    """
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ValueError('TF_CONFIG needs "cluster" and "task" objects, got '
                         f"{text!r} (see docs/DISTRIBUTED.md)")
    task_type, index = task.get("type"), task.get("index")
    jobs = cluster.get(task_type)
    if task_type not in ("worker", "chief") or not isinstance(jobs, list):
        raise ValueError(f'TF_CONFIG task type {task_type!r} must be "worker" or "chief" '
                         f"and name a job of the cluster {sorted(cluster)}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(jobs):
        raise ValueError(f"TF_CONFIG task index {index!r} is not in 0..{len(jobs) - 1} "
                         f"(the cluster has {len(jobs)} {task_type} address(es))")
    if len(cluster.get("chief", [])) > 1:
        raise ValueError("TF_CONFIG: a cluster has at most one chief")
    return tf_config


def is_multi_worker(strategy) -> bool:
    """True for a `MultiWorkerMirroredStrategy` with more than one worker."""
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())  # noqa: SLF001 (no public API)


def is_chief(strategy) -> bool:
    """Whether this worker writes the run directory: always, except for the
    non-chief workers of a multi-worker cluster (the chief is the "chief" task, or
    worker 0 when the cluster has no chief)."""
    return bool(strategy.extended.should_checkpoint)


def make_strategy(name: str = "mirrored", *, num_cpu_devices: int = 0):
    """The strategy called `name` (see the module docstring)."""
    if name not in STRATEGIES:
        raise ValueError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}")
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment "
                             "variable (cluster spec and this worker's task)")
        check_tf_config(os.environ["TF_CONFIG"])
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
