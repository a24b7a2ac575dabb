"""The export program: `python export.py --help` (its usage text is `flags/export.py`'s USAGE;
the program is `coseg_tf.cli.export`, also the `coseg-export` console script).
"""

from coseg_tf import cli

if __name__ == "__main__":
    cli.export()
