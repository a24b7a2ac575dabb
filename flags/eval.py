"""absl flags of eval.py, grouped by topic.

Import under an alias (this package shares its name with absl's module):

    from flags import eval as eval_flags
    eval_flags.define_eval_flags()
    config = eval_flags.config_from_flags(FLAGS)

Paper setting: whole validation images, no test-time augmentation (--flip and
--scales are extras), IoU with background left out of the mean.
"""

from __future__ import annotations

from absl import flags


# What `eval.py --help` prints above the flags (coseg_tf/cli.py), for the root script
# and the `coseg-eval` console script alike.
USAGE = r"""Evaluates a trained part segmenter: IoU per class in the layout of the paper's tables.

    python eval.py --model_dir=runs/coseg --eval_data=DIR/val-*.tfrecord
    python eval.py --model_dir=runs/coseg --checkpoint=best --eval_data=... --overlays=8
    python eval.py --saved_model=exports/coseg --eval_data=... --flip --scales=0.75,1,1.25

Flags are defined in flags/eval.py. Writes MODEL_DIR/eval_<split>/metrics.json (or
--output_dir) and prints the paper's row (Table 1 for head|body|hand|leg, Table 2 for
all4) on stdout; the progress bar goes to stderr.
"""


def _parse_scales(values):
    """Floats of a --scales list; ValueError naming the bad item."""
    scales = []
    for item in values:
        try:
            scale = float(item)
        except ValueError:
            raise ValueError(f"{item!r} is not a number") from None
        if not scale > 0:
            raise ValueError(f"{item!r} is not positive")
        scales.append(scale)
    if not scales:
        raise ValueError("no scale given")
    return tuple(scales)


def _valid_scales(values):
    try:
        _parse_scales(values)
    except ValueError as e:
        raise flags.ValidationError(f"--scales: {e} (e.g. --scales=0.75,1,1.25)") from None
    return True


def define_model_flags():
    # === Model: a training run (checkpoint) or an export (SavedModel) ===
    flags.DEFINE_string("model_dir", None, "Training run directory (model.json, "
                        "checkpoints/). Or pass --saved_model.")
    flags.DEFINE_string("checkpoint", "last",
                        "last, best (by validation loss), or a path to a .weights.h5 of "
                        "the run. DESIGN.md §6: comparisons evaluate 'last'.")
    flags.DEFINE_string("saved_model", None,
                        "Instead of --model_dir: an export (EXPORT_DIR or "
                        "EXPORT_DIR/<version>); its 'serve_mask' signature is evaluated.")


def define_data_flags():
    # === Data ===
    flags.DEFINE_string("eval_data", None,
                        "Evaluation TFRecords (glob, or comma-separated globs), as written "
                        "by tools/make_tfrecords.py; e.g. DIR/val-*.tfrecord.")
    flags.DEFINE_string("parts", None,
                        "Part scheme (a built-in's name or a JSON scheme file); default: "
                        "the model's (model.json). Must have the model's class count.")
    flags.DEFINE_enum("human_region", None, ["boxes", "instance"],
                      "Human region y given to the model; default: the model's (boxes, "
                      "the paper's setting).")
    flags.DEFINE_integer("max_images", 0, "Evaluate the first N images only (0 = all).",
                         lower_bound=0)


def define_tta_flags():
    # === Test-time augmentation (averaged in probability; paper: none) ===
    flags.DEFINE_boolean("flip", False, "Add the horizontally mirrored image.")
    flags.DEFINE_list("scales", ["1"], "Image scales, e.g. 0.75,1,1.25 (1 = none).")
    flags.register_validator("scales", _valid_scales)


def define_output_flags():
    # === Output ===
    flags.DEFINE_string("output_dir", None,
                        "metrics.json and overlays/; default MODEL_DIR/eval_<split>.")
    flags.DEFINE_integer("overlays", 0, "Pictures (image | ground truth | prediction) of "
                         "the first N images.", lower_bound=0)
    flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bar on stderr.")


def define_eval_flags():
    define_model_flags()
    define_data_flags()
    define_tta_flags()
    define_output_flags()
    flags.mark_flag_as_required("eval_data")


def config_from_flags(FLAGS):  # noqa: N803
    """Turns the parsed flags into the plain config the library takes (once)."""
    from coseg_tf import evaluation

    values = {name: FLAGS[name].value for name in evaluation.EvalConfig.__dataclass_fields__}
    values["scales"] = _parse_scales(values["scales"])
    return evaluation.EvalConfig(**values)
