"""Exports a trained part segmenter as a SavedModel version for TF Serving.

    python export.py --model_dir=runs/coseg --export_dir=exports/coseg [--checkpoint=best]

Writes EXPORT_DIR/<version>/ (the next free version unless --version; an existing one
only with --overwrite) and ends with the commands that inspect and serve it. Signatures
and layout: coseg_tf/export.py; flags: flags/export.py.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from flags import flagfiles  # noqa: E402
from flags import export as export_flags  # noqa: E402

export_flags.define_export_flags()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from coseg_tf import export as export_lib  # after flag parsing: TF start-up is slow

    config = export_flags.config_from_flags(FLAGS)
    try:
        result = export_lib.run_export(config)
    except export_lib.ConfigError as e:
        print(f"export.py: error: {e}", file=sys.stderr)
        return 2
    print(export_lib.describe_export(result))
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=flagfiles.parse)
