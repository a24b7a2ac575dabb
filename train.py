"""Trains a part segmenter with the supervised or the cosegmentation losses.

    python train.py --flagfile=recipes/cpu_small.flags --train_data=DIR/train-*.tfrecord \
        --model_dir=runs/coseg --method=coseg

Flags are defined in flags/train.py; recipes (the paper's setting, a small CPU
setting) in recipes/. A restarted run with the same --model_dir resumes where it was,
as if it had never stopped; a flag that changes the experiment is refused (README,
"Resuming"). Exit codes: 2 a refused flag, input or record, 3 a NaN loss.
"""

from coseg_tf import cli

if __name__ == "__main__":
    cli.train()
