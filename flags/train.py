"""absl flags of train.py, grouped by topic. Defaults are the paper's setting.

Import under an alias (this package shares its name with absl's module):

    from flags import train as train_flags
    train_flags.define_train_flags()
    config = train_flags.config_from_flags(FLAGS)

Recipes live in `recipes/*.flags` (`python train.py --flagfile=recipes/paper.flags`).
"""

from __future__ import annotations

from absl import flags

from coseg_tf import model as model_lib
from coseg_tf import objectives
from coseg_tf import precision
from coseg_tf import run_dir, train_lib


# What `train.py --help` prints above the flags (coseg_tf/cli.py), for the root script
# and the `coseg-train` console script alike.
USAGE = r"""Trains a part segmenter with one of the methods of coseg_tf/objectives (--method).

    python train.py --flagfile=recipes/cpu_small.flags --train_data=DIR/train-*.tfrecord \
        --model_dir=runs/coseg --method=coseg

Flags are defined in flags/train.py; recipes (the paper's setting, a small CPU
setting) in recipes/. A restarted run with the same --model_dir resumes where it was,
as if it had never stopped; a flag that changes the experiment is refused (README,
"Resuming"). Exit codes: 1 a flag absl cannot parse, 2 a refused flag, input or
record, 3 a NaN loss.
"""


def define_data_flags():
    # === Data ===
    flags.DEFINE_string("train_data", None,
                        "Training TFRecords (glob, or comma-separated globs), as written by "
                        "tools/make_tfrecords.py.")
    flags.DEFINE_string("val_data", None, "Validation TFRecords (optional): validation "
                        "loss and the 'best' checkpoint.")
    flags.DEFINE_string("unlabeled_data", None,
                        "TFRecords of the unlabeled stream (glob, or comma-separated "
                        "globs), e.g. box-only records (make_tfrecords.py "
                        "--source=boxes_only). Default: the --train_data images, their "
                        "labels hidden (the paper's setting).")
    flags.DEFINE_string("parts", "all4",
                        "Part scheme: head|body|hand|leg (the paper's Table 1), all4 "
                        "(Table 2), person_part6, or a JSON scheme file (any vocabulary; "
                        "README, 'Your own data').")
    flags.DEFINE_enum("human_region", "boxes", ["boxes", "instance"],
                      "Human region y: union of the person boxes (paper) or instance masks.")
    # Paper setting: 10 labeled images chosen at random among the 1716 training images.
    flags.DEFINE_integer("num_labeled", 10, "Number of labeled training images.")
    flags.DEFINE_integer("labeled_seed", 0, "Seed of the choice of the labeled images.")
    flags.DEFINE_string("labeled_ids_file", None,
                        "File of labeled image ids, one a line (overrides --num_labeled).")
    flags.DEFINE_integer("crop_size", 321, "Training crop (paper: 321).")
    flags.DEFINE_float("min_scale", 0.5, "Smallest random scale of training images.")
    flags.DEFINE_float("max_scale", 1.5, "Largest random scale of training images.")
    # Paper setting: 1 labeled + 23 unlabeled images in each batch of 24.
    flags.DEFINE_integer("batch_labeled", 1, "Labeled images per replica and step (B_f).")
    flags.DEFINE_integer("batch_unlabeled", 23, "Unlabeled images per replica and step (B_u).")
    flags.DEFINE_boolean("diagnostics", False,
                         "Carry the hidden labels of the unlabeled images under a separate "
                         "key for the mining-precision metric (no loss reads them).")


def define_model_flags():
    # === Model ===
    flags.DEFINE_float("width_multiplier", 1.0,
                       "Scales every channel count (1.0 = DeepLab-LargeFOV; 0.25 for CPU).")
    flags.DEFINE_enum("init", "vgg16", ["vgg16", "run", "random"],
                      "vgg16: ImageNet weights from --init_weights, or without it Keras' "
                      "cached copy (downloaded once, hash checked); run: the network of "
                      "another run (--init_weights=RUN_DIR, its last checkpoint, or a "
                      ".weights.h5 inside it; same --parts and --width_multiplier); "
                      "random: fresh initialisation.")
    flags.DEFINE_string("init_weights", None,
                        "--init=vgg16: local VGG16 ImageNet weights in the layout of Keras' "
                        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5; --init=run: a "
                        "run directory or one of its checkpoints.")
    flags.DEFINE_float("dropout_rate", 0.5, "Dropout after fc6 and fc7.")
    defaults = train_lib.TrainConfig
    flags.DEFINE_enum("fc6_impl", defaults.fc6_impl, list(model_lib.FC6_IMPLS),
                      "How fc6 (3x3, dilation 12) is computed: taps (one matmul per kernel "
                      "tap, fast on CPU), conv (TensorFlow's dilated convolution, cuDNN on "
                      "a GPU) or auto (conv where a GPU is visible, else taps). Same "
                      "weights and outputs; recorded in model.json for eval and export.")
    flags.DEFINE_enum("mixed_precision", defaults.mixed_precision,
                      list(precision.CHOICES),
                      "Keras mixed precision: float16 (mixed_float16, dynamic loss "
                      "scaling; for GPUs), bfloat16 (mixed_bfloat16; GPUs/TPUs, CPUs with "
                      "AVX512-BF16 or AMX), off (float32) or auto (bfloat16 on a CPU-only "
                      "machine whose CPU computes it natively, else off). Variables, "
                      "logits and losses stay float32; checkpoints load across precisions.")


def define_method_flags():
    # === Method and losses ===
    # Each method is an objective of coseg_tf/objectives/ (the registry's choices).
    defaults = train_lib.TrainConfig
    flags.DEFINE_enum("method", defaults.method, list(objectives.METHODS),
                      "; ".join(f"{name}: {cls.summary}"
                                for name, cls in objectives.REGISTRY.items()) + ".")
    flags.DEFINE_float("alpha", defaults.alpha, "Weight of L_human (paper: 0.001).")
    flags.DEFINE_float("beta", defaults.beta, "Weight of L_coseg (paper: 0.001).")
    flags.DEFINE_float("image_label_weight", defaults.image_label_weight,
                       "gmp, em_adapt: weight of the unlabeled images' loss term.")
    flags.DEFINE_float("em_fg_share", defaults.em_fg_share, "em_adapt: share of the human "
                       "region the E-step gives each present part class (Papandreou et "
                       "al.: 0.2).")
    flags.DEFINE_float("em_bg_share", defaults.em_bg_share, "em_adapt: share of the human "
                       "region the E-step gives the background (Papandreou et al.: 0.4).")
    # Weak-to-strong consistency (fixmatch, unimatch and their coseg combinations;
    # coseg_tf/consistency_losses.py). UniMatch's setting: threshold 0.95, weight 1.
    flags.DEFINE_float("unlabeled_weight", defaults.unlabeled_weight,
                       "fixmatch, unimatch, coseg_*match: lambda_u, the weight of the "
                       "consistency term (UniMatch: 1, as L_humanparts').")
    flags.DEFINE_float("confidence_threshold", defaults.confidence_threshold,
                       "fixmatch, unimatch, coseg_*match: a pseudo-label is kept where the "
                       "teacher's probability is >= this (UniMatch: 0.95).")
    flags.DEFINE_float("feature_dropout", defaults.feature_dropout,
                       "unimatch, coseg_unimatch: channel dropout on the weak view's "
                       "encoder features in the feature-perturbation stream (UniMatch: "
                       "0.5).")
    # Mining of L_coseg: the defaults are the paper's; each other value is an option
    # measured beside it (docs/RESULTS.md; coseg_tf/losses.py MiningOptions).
    flags.DEFINE_enum("mining_point", defaults.mining_point, ["argmax", "prototype"],
                      "coseg*: r_c = m^f at the most confident pixel of class c (argmax, "
                      "the paper) or the mean of m^f over the pixels labeled c (prototype).")
    flags.DEFINE_enum("mining_distance", defaults.mining_distance, ["euclidean", "cosine"],
                      "coseg*: distance between r_c and the target's features (paper: "
                      "euclidean).")
    flags.DEFINE_boolean("mining_agreement", defaults.mining_agreement,
                         "coseg*: keep only mined positions whose current prediction is "
                         "the class they were mined for (paper: off).")
    flags.DEFINE_integer("mining_targets", defaults.mining_targets,
                         "coseg*: targets per labeled image, the most similar unlabeled "
                         "images of the replica's batch (paper: 1).", lower_bound=1)
    flags.DEFINE_enum("mining_features", defaults.mining_features, ["train", "inference"],
                      "coseg*: mine on features with dropout on (train: coseg's training "
                      "pass, the paper) or on an inference-mode pass (no dropout, no "
                      "gradient; coseg: ~1/3 of a step more). coseg_*match mine on the "
                      "weak view (coseg_tf/objectives/coseg_consistency.py).")


def define_optimizer_flags():
    # === Optimisation (paper: SGD 0.9, lr 1e-3, fc8 x10, wd 5e-4, poly) ===
    flags.DEFINE_float("learning_rate", 1e-3, "Base learning rate.")
    flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
    flags.DEFINE_float("weight_decay", 5e-4, "L2 weight decay on kernels.")
    flags.DEFINE_float("fc8_lr_multiplier", 10.0, "Learning-rate multiplier of fc8.")
    flags.DEFINE_float("poly_power", 0.9, "Power of the poly learning-rate decay.")
    flags.DEFINE_integer("steps", 6000, "Training steps.")
    flags.DEFINE_boolean("jit_compile", train_lib.TrainConfig.jit_compile,
                         "Compile the train step with XLA. Off by default: on this "
                         "project's CPU it made the step 2.0-2.6x slower; measure on GPUs.")


def define_run_flags():
    # === Run, checkpoints, distribution ===
    flags.DEFINE_string("model_dir", None, "Run directory: flags, labeled ids, "
                        "checkpoints, logs. A restarted run resumes from it with the "
                        "recorded flags; only "
                        + ", ".join(f"--{n}" for n in run_dir.RESUME_MAY_CHANGE)
                        + " may change (README, 'Resuming').")
    flags.DEFINE_integer("checkpoint_every", 100,
                         "Steps between checkpoints (also the Keras 'epoch' length).")
    flags.DEFINE_boolean("keep_checkpoints", False,
                         "Also keep checkpoints/epoch-NNNN.weights.h5 of every interval "
                         "(to evaluate the last few, as the experiments do).")
    flags.DEFINE_integer("val_steps", 20, "Validation batches at each checkpoint.")
    flags.DEFINE_enum("strategy", "mirrored", ["default", "mirrored", "multi_worker"],
                      "Distribution strategy (multi_worker reads TF_CONFIG).")
    flags.DEFINE_integer("num_cpu_devices", 0,
                         "Without GPUs, split the CPU into this many logical devices "
                         "(tests, demos).")
    flags.DEFINE_integer("seed", 0, "Seed of initialisation and data order.")
    flags.DEFINE_integer("verbose", 1, "Keras progress: 0 silent, 1 bar, 2 one line/epoch.")


def define_train_flags():
    define_data_flags()
    define_model_flags()
    define_method_flags()
    define_optimizer_flags()
    define_run_flags()
    flags.mark_flags_as_required(["train_data", "model_dir"])


def config_from_flags(FLAGS) -> "train_lib.TrainConfig":  # noqa: N803
    """Turns the parsed flags into the plain config the library takes (once)."""
    fields = train_lib.TrainConfig.__dataclass_fields__
    return train_lib.TrainConfig(**{name: FLAGS[name].value for name in fields})
