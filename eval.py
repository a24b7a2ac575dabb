"""Evaluates a trained part segmenter: IoU per class in the layout of the paper's tables.

    python eval.py --model_dir=runs/coseg --eval_data=DIR/val-*.tfrecord
    python eval.py --model_dir=runs/coseg --checkpoint=best --eval_data=... --overlays=8
    python eval.py --saved_model=exports/coseg --eval_data=... --flip --scales=0.75,1,1.25

Flags are defined in flags/eval.py. Writes MODEL_DIR/eval_<split>/metrics.json (or
--output_dir) and prints the paper's row (Table 1 for head|body|hand|leg, Table 2 for
all4) on stdout; the progress bar goes to stderr.
"""

from coseg_tf import cli

if __name__ == "__main__":
    cli.evaluate()
