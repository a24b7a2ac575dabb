"""absl flags of predict.py, grouped by topic.

Import under an alias (this package shares its name with absl's module):

    from flags import predict as predict_flags
    predict_flags.define_predict_flags()
    config = predict_flags.config_from_flags(FLAGS)
"""

from __future__ import annotations

from absl import flags

from coseg_tf import predict as predict_lib


# What `predict.py --help` prints above the flags (coseg_tf/cli.py), for the root script
# and the `coseg-predict` console script alike.
USAGE = r"""Part label maps of new photos, from a training run or an export.

    python predict.py --model_dir=runs/coseg --images=photos/ --whole_image \
        --output_dir=parts/
    python predict.py --saved_model=exports/coseg --images='photos/*.jpg' \
        --coco_file=detections.json --min_score=0.5 --output_dir=parts/

Writes OUTPUT_DIR/ID.png (palette PNG, pixel value = class id), ID_overlay.jpg,
legend.json (class names and colours) and summary.json; bad files are named and
skipped. Flags: flags/predict.py; what it does: coseg_tf/predict.py. Exit code 2 for a
refused flag or input.
"""


def define_predict_flags():
    defaults = predict_lib.PredictConfig
    # === The model: a training run (checkpoint) or an export (SavedModel) ===
    flags.DEFINE_string("model_dir", None, "Training run directory (model.json, "
                        "checkpoints/). Or pass --saved_model.")
    flags.DEFINE_string("checkpoint", defaults.checkpoint,
                        "With --model_dir: last, best, or a path to a .weights.h5 of the "
                        "run.")
    flags.DEFINE_string("saved_model", None,
                        "Instead of --model_dir: an export (EXPORT_DIR or "
                        "EXPORT_DIR/<version>); its serving_default signature is called, "
                        "as TF Serving would.")
    # === The images and their human regions ===
    flags.DEFINE_string("images", None, "A directory of images (.jpg, .jpeg, .png) or a "
                        "glob (or comma-separated globs).")
    flags.DEFINE_string("coco_file", None,
                        "Person boxes: a COCO instances file, or COCO-format detection "
                        "results (image_id = the image's file stem).")
    flags.DEFINE_float("min_score", defaults.min_score,
                       "With --coco_file: boxes whose score is lower are dropped.")
    flags.DEFINE_string("voc_annotations_dir", None,
                        "Person boxes: a directory of VOC ID.xml files.")
    flags.DEFINE_boolean("whole_image", defaults.whole_image,
                         "The human region is the whole image (no box file).")
    # === Outputs ===
    flags.DEFINE_string("output_dir", None, "Where ID.png (palette label map), "
                        "ID_overlay.jpg, legend.json and summary.json go.")
    flags.DEFINE_boolean("overlays", defaults.overlays,
                         "Also write ID_overlay.jpg (the classes over the photo).")
    flags.DEFINE_integer("verbose", defaults.verbose, "0 silent, 1 progress bar.")
    flags.mark_flags_as_required(["images", "output_dir"])


def config_from_flags(FLAGS) -> "predict_lib.PredictConfig":  # noqa: N803
    """Turns the parsed flags into the plain config the library takes (once)."""
    fields = predict_lib.PredictConfig.__dataclass_fields__
    return predict_lib.PredictConfig(**{name: FLAGS[name].value for name in fields})
