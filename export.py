"""Exports a trained part segmenter as a SavedModel version for TF Serving.

    python export.py --model_dir=runs/coseg --export_dir=exports/coseg [--checkpoint=best]

Writes EXPORT_DIR/<version>/ (the next free version unless --version; an existing one
only with --overwrite) and ends with the commands that inspect and serve it. Signatures
and layout: coseg_tf/export.py; flags: flags/export.py.
"""

from coseg_tf import cli

if __name__ == "__main__":
    cli.export()
