"""The predict program: `python predict.py --help` (its usage text is `flags/predict.py`'s USAGE;
the program is `coseg_tf.cli.predict`, also the `coseg-predict` console script).
"""

from coseg_tf import cli

if __name__ == "__main__":
    cli.predict()
