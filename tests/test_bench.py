"""Smoke test of tools/bench.py: the --quick run writes every ratio, each a positive number.

Checks the report's structure and that every measured ratio is a positive finite
number; never the speed (the machine is shared: timings are not testable).
"""

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO

def _expected_ratios():
    from coseg_tf import objectives

    return {
        "coseg_overhead", "input_pipeline", "compute_efficiency", "crop_scaling",
        "converter_vs_io", "converter_workers", "serving", "jit_compile",
        "mixed_bfloat16", "mixed_float16",
    } | {f"step_{name}" for name in objectives.METHODS}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench.py"), "--quick",
                           "--profile_steps=1", f"--output={out}"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "coseg_overhead" in proc.stdout  # the printed table
    with open(out) as f:
        report = json.load(f)
    report["stdout"] = proc.stdout
    return report


@pytest.mark.slow
def test_quick_bench_reports_every_ratio(report):
    names = [row["name"] for row in report["ratios"]]
    assert sorted(names) == sorted(_expected_ratios())
    for row in report["ratios"]:
        assert set(row) >= {"name", "value", "goal", "met", "what"}
        assert isinstance(row["value"], float), row
        assert math.isfinite(row["value"]) and row["value"] > 0, row
        if row["goal"] is None:
            assert row["met"] is None
        else:
            assert isinstance(row["met"], bool), row


@pytest.mark.slow
def test_quick_bench_details(report):
    assert report["settings"]["width"] > 0
    training = report["details"]["training"]
    times = training["times"]
    for group, case in (("overhead_pair", "coseg"), ("overhead_pair", "supervised_on_all"),
                        ("compute_group", "dense_conv"), ("compute_group", "pipeline"),
                        ("compute_group", "pipeline_one_core"),
                        ("mixed_precision_group", "coseg_mixed_bfloat16"),
                        ("mixed_precision_group", "coseg_mixed_float16")):
        assert times[group][case]["median"] > 0
    assert training["step_gflops"] > 0
    # XLA and bfloat16 compute the same losses as float32 (correctness, not speed).
    assert training["xla_vs_float32_max_rel_diff"] < 1e-3
    assert training["bfloat16_vs_float32_max_rel_diff"] < 0.1
    assert training["bfloat16_losses_finite"]
    assert training["float16_vs_float32_max_rel_diff"] < 0.01
    assert training["float16_losses_finite"]
    # every registered method's step beside the supervised step on the same batch
    methods = report["details"]["methods"]["times"]
    assert methods["supervised_on_all"]["median"] > 0
    goals = {row["name"]: row["goal"] for row in report["ratios"]}
    assert goals["step_fixmatch"] == goals["step_coseg_fixmatch"] == "<= 2.0"
    memory = report["memory"]["cpu"]
    assert memory["peak_rss_mb"] >= memory["rss_after_build_mb"] > 0
    scaling = report["step_scaling"]
    for key in ("batch_unlabeled", "crop"):
        assert len(scaling[key]) >= 2
        assert all(row["step_s"] > 0 for row in scaling[key])


@pytest.mark.slow
def test_quick_bench_prints_the_cpu_beside_its_ratios(report):
    from coseg_tf import precision

    flags = precision.cpu_flags()
    cpu = report["cpu"]
    assert cpu["flags"] == [f for f in precision.REPORTED_CPU_FLAGS if f in flags]
    assert cpu["native_bfloat16"] is precision.has_native_bfloat16(flags)
    lines = report["stdout"].splitlines()
    assert lines[0].startswith("CPU: ") and " ".join(cpu["flags"]) in lines[0]
    assert "native bfloat16: " + ("yes" if cpu["native_bfloat16"] else "no") in lines[0]
    assert any("say nothing about GPUs" in line for line in lines)


@pytest.mark.slow
def test_quick_bench_profiles_the_step_by_layer_group(report):
    profile = report["profile"]
    groups = {row["group"]: row for row in profile["groups"]}
    assert {"block1", "block3", "block5", "fc6", "fc7", "fc8"} <= set(groups)
    assert sum(row["share"] for row in profile["groups"]) == pytest.approx(1.0)
    for name in ("block1", "block5", "fc7"):
        row = groups[name]
        assert row["op_s"] >= row["conv_op_s"] > 0
        assert row["conv_gflop_per_s"] > 0 and row["conv_rate_vs_dense"] > 0
    assert profile["categories"]["conv backward"] > 0
