"""`--help` of the programs and the two data tools: their description and own flags, exit 0."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


@pytest.mark.parametrize("program, flag, first_line", [
    ("train.py", "--train_data", "Trains a part segmenter"),
    ("eval.py", "--eval_data", "Evaluates a trained part segmenter"),
    ("export.py", "--export_dir", "Exports a trained part segmenter"),
    ("predict.py", "--images", "Part label maps of new photos"),
    ("tools/make_tfrecords.py", "--source", "Converts images and their annotations"),
    ("tools/make_synthetic.py", "--output_dir", "The embedded default dataset"),
])
def test_help_lists_the_programs_own_flags(program, flag, first_line):
    # absl's own --help lists only the key flags of __main__, none here (the flags live
    # in flags/; a console script is __main__ itself), and exits 1: a user saw no flag.
    proc = subprocess.run([sys.executable, str(REPO / program), "--help"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(first_line), proc.stdout[:300]
    assert f"  {flag}:" in proc.stdout
    assert "--helpfull" in proc.stdout


def test_console_script_help_is_the_same_text():
    script = Path(sys.executable).with_name("coseg-train")
    if not script.exists():
        pytest.skip("console scripts not installed (pip install -e .)")
    out = subprocess.run([str(script), "-h"], capture_output=True, text=True, env=ENV,
                         timeout=120)
    ref = subprocess.run([sys.executable, str(REPO / "train.py"), "-h"],
                         capture_output=True, text=True, env=ENV, timeout=120)
    # The same text, the pointer to --helpfull naming the program as invoked.
    assert out.returncode == 0
    assert out.stdout == ref.stdout.replace("train.py --helpfull", "coseg-train --helpfull")
    assert out.stdout.rstrip().endswith("coseg-train --helpfull")
