"""absl flags of export.py.

Import under an alias (this package shares its name with absl's module):

    from flags import export as export_flags
    export_flags.define_export_flags()
    config = export_flags.config_from_flags(FLAGS)
"""

from __future__ import annotations

from absl import flags

from coseg_tf import export as export_lib


# What `export.py --help` prints above the flags (coseg_tf/cli.py), for the root script
# and the `coseg-export` console script alike.
USAGE = r"""Exports a trained part segmenter as a SavedModel version for TF Serving.

    python export.py --model_dir=runs/coseg --export_dir=exports/coseg [--checkpoint=best]

Writes EXPORT_DIR/<version>/ (the next free version unless --version; an existing one
only with --overwrite) and ends with the commands that inspect and serve it. Signatures
and layout: coseg_tf/export.py; flags: flags/export.py.
"""


def define_export_flags():
    # === The trained model: a run directory of train.py ===
    flags.DEFINE_string("model_dir", None, "Run directory written by train.py "
                        "(model.json, checkpoints/).")
    flags.DEFINE_string("checkpoint", "last",
                        "last, best (by validation loss), or a path to a .weights.h5 "
                        "checkpoint of the run.")
    # === The export: TF Serving's layout EXPORT_DIR/<version>/ ===
    flags.DEFINE_string("export_dir", None,
                        "The model's base directory for TF Serving (--model_base_path); "
                        "each export is a numbered version beneath it. gs:// works.")
    flags.DEFINE_integer("version", None,
                         "Version number to write (an integer >= 0; TF Serving serves the "
                         "highest). Default: one more than the highest existing.")
    flags.DEFINE_boolean("overwrite", False, "Replace the version if it exists "
                         "(otherwise an existing version is an error).")
    flags.mark_flags_as_required(["model_dir", "export_dir"])


def config_from_flags(FLAGS) -> "export_lib.ExportConfig":  # noqa: N803
    """Turns the parsed flags into the plain config the library takes (once)."""
    fields = export_lib.ExportConfig.__dataclass_fields__
    return export_lib.ExportConfig(**{name: FLAGS[name].value for name in fields})
