"""The eval program: `python eval.py --help` (its usage text is `flags/eval.py`'s USAGE;
the program is `coseg_tf.cli.evaluate`, also the `coseg-eval` console script).
"""

from coseg_tf import cli

if __name__ == "__main__":
    cli.evaluate()
