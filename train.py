"""The train program: `python train.py --help` (its usage text is `flags/train.py`'s USAGE;
the program is `coseg_tf.cli.train`, also the `coseg-train` console script).
"""

from coseg_tf import cli

if __name__ == "__main__":
    cli.train()
