"""Trains a part segmenter with the supervised or the cosegmentation losses.

    python train.py --flagfile=recipes/cpu_small.flags --train_data=DIR/train-*.tfrecord \
        --model_dir=runs/coseg --method=coseg

Flags are defined in flags/train.py; recipes (the paper's setting, a small CPU
setting) in recipes/. A restarted run with the same --model_dir resumes where it was,
as if it had never stopped; a flag that changes the experiment is refused (README,
"Resuming"). Exit codes: 2 a refused flag, input or record, 3 a NaN loss.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from flags import flagfiles  # noqa: E402
from flags import train as train_flags  # noqa: E402

train_flags.define_train_flags()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from coseg_tf import train_lib  # after flag parsing: TF start-up is slow

    config = train_flags.config_from_flags(FLAGS)
    try:
        train_lib.run_training(config)
    except train_lib.ConfigError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=flagfiles.parse)
