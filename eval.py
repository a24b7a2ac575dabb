"""Evaluates a trained part segmenter: IoU per class in the layout of the paper's tables.

    python eval.py --model_dir=runs/coseg --eval_data=DIR/val-*.tfrecord
    python eval.py --model_dir=runs/coseg --checkpoint=best --eval_data=... --overlays=8
    python eval.py --saved_model=exports/coseg --eval_data=... --flip --scales=0.75,1,1.25

Flags are defined in flags/eval.py. Writes MODEL_DIR/eval_<split>/metrics.json (or
--output_dir) and prints the paper's row (Table 1 for head|body|hand|leg, Table 2 for
all4) on stdout; the progress bar goes to stderr.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from flags import flagfiles  # noqa: E402
from flags import eval as eval_flags  # noqa: E402

eval_flags.define_eval_flags()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from coseg_tf import evaluation  # after flag parsing: TF start-up is slow

    config = eval_flags.config_from_flags(FLAGS)
    try:
        metrics = evaluation.evaluate(config)
    except evaluation.ConfigError as e:
        print(f"eval.py: error: {e}", file=sys.stderr)
        return 2
    print(evaluation.format_report(metrics))
    print(f"wrote {os.path.join(metrics['output_dir'], evaluation.METRICS_FILE)}")
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=flagfiles.parse)
