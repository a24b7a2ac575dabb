"""`make demo`: the whole system on the embedded synthetic data, in the small CPU setting.

1. generate the synthetic set in the Pascal-Part source format (tools/make_synthetic.py)
   and convert train and val with tools/make_tfrecords.py;
2. train, with the flags of recipes/cpu_small.flags, each run after a supervised
   warm-up of experiments.WARMUP_STEPS on its labeled images (one warm-up shared by (a)
   and (b): the paper's "better representation before L_coseg", the baseline included):
     (a) supervised on 10 labeled images,
     (b) coseg with the same 10 labeled images + every training image as unlabeled,
     (c) supervised on all training labels, the ceiling, trained experiments.CEILING_STEPS
         after its warm-up (longer than (a) and (b): with every label the network keeps
         learning for thousands of steps, while ten labels stop helping far earlier:
         docs/RESULTS.md, "The demo");
3. evaluate the three on val, print Table 2's layout (scheme all4) and write
   runs/demo/RESULTS.md, each run's metrics.json, overlays of (a), (b), (c) side by
   side on the same images, and training curves (loss terms, mining precision).

Each step is skipped when its output is already complete (a finished run is not
redone), so an interrupted demo continues where it stopped.

    python tools/demo.py [--data_dir=data/synthetic] [--run_dir=runs/demo] [--steps=N]
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tools import experiments  # noqa: E402  (turns oneDNN on: before TensorFlow)

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("data_dir", "data/synthetic", "Where the synthetic data goes.")
    flags.DEFINE_string("run_dir", "runs/demo", "Where the runs and results go.")
    flags.DEFINE_integer("num_images", experiments.DEMO_NUM_IMAGES,
                         "Synthetic images (train + val).")
    flags.DEFINE_integer("image_size", experiments.DEMO_IMAGE_SIZE, "Synthetic image size.")
    flags.DEFINE_integer("data_seed", 0, "Seed of the synthetic data.")
    flags.DEFINE_integer("steps", None, "Training steps of (a) and (b) after their warm-up "
                         "(default: the recipe's).")
    flags.DEFINE_integer("ceiling_steps", experiments.CEILING_STEPS,
                         "Training steps of (c), all labels, after its warm-up.")
    flags.DEFINE_integer("warmup_steps", experiments.WARMUP_STEPS,
                         "Supervised warm-up steps before each run (0 = none).")
    flags.DEFINE_integer("num_labeled", 10, "Labeled images of (a) and (b).")
    flags.DEFINE_integer("overlays", 6, "Validation images drawn side by side.")
    flags.DEFINE_integer("max_eval_images", 0, "Evaluate the first N val images (0 = all).")
    flags.DEFINE_string("recipe", experiments.DEMO_RECIPE, "Training recipe (flag file).")


def runs_of(num_labeled, num_train, ceiling_steps):
    """The three runs of the paper's Table 1: name -> (label, overrides); "warmup"
    names the supervised warm-up each starts from ((a) and (b) share one); (c) trains
    `ceiling_steps` after it."""
    warm = f"warmup_nf{num_labeled}"
    return {
        "a_supervised": (f"(a) supervised, n_f={num_labeled}",
                         {"method": "supervised", "num_labeled": num_labeled,
                          "warmup": warm}),
        "b_coseg": (f"(b) coseg, n_f={num_labeled}, n_u={num_train}",
                    {"method": "coseg", "num_labeled": num_labeled, "warmup": warm}),
        "c_supervised_all": (f"(c) supervised, n_f={num_train}",
                             {"method": "supervised", "num_labeled": num_train,
                              "warmup": "warmup_all", "steps": ceiling_steps}),
    }


def main(argv):
    del argv
    start = time.time()
    recipe = experiments.read_flagfile(experiments.find_recipe(FLAGS.recipe))
    train_data, val_data = experiments.prepare_data(FLAGS.data_dir, num_images=FLAGS.num_images,
                                        image_size=FLAGS.image_size, seed=FLAGS.data_seed)
    from coseg_tf import evaluation
    from pipelines import schema, streams

    num_train = len(streams.read_ids(train_data))
    runs = runs_of(FLAGS.num_labeled, num_train, FLAGS.ceiling_steps)
    from coseg_tf import train_lib
    for name, (_, overrides) in runs.items():
        try:
            experiments.train_with_warmup(
                FLAGS.run_dir, name, recipe, overrides, train_data, val_data,
                warmup_steps=FLAGS.warmup_steps,
                steps=None if "steps" in overrides else FLAGS.steps,
                recipe_path=FLAGS.recipe)
        except (experiments.SettingError, train_lib.ConfigError) as e:
            print(f"demo.py: error: {e}", file=sys.stderr)
            return 2

    scheme = schema.get_scheme(recipe.get("parts", "all4"))
    results = {}
    for name, (label, _) in runs.items():
        model_dir = os.path.join(FLAGS.run_dir, name)
        experiments.log(f"eval: {model_dir} on {val_data}")
        results[name] = evaluation.evaluate(evaluation.EvalConfig(
            eval_data=val_data, model_dir=model_dir, checkpoint="last",
            output_dir=os.path.join(model_dir, "eval_val"),
            max_images=FLAGS.max_eval_images, verbose=1))

    rows = [(runs[n][0], results[n]) for n in runs]
    text = [evaluation.format_table_header(scheme, label="Method", label_width=40)]
    text += [evaluation.format_table_row(m, scheme, label=lab, label_width=40)
             for lab, m in rows]
    steps_ab = FLAGS.steps or int(recipe["steps"])
    schedule = (f"Steps: {FLAGS.warmup_steps} supervised warm-up + {steps_ab} for (a) and (b) "
                f"(one warm-up shared), {FLAGS.warmup_steps} + {FLAGS.ceiling_steps} for (c).")
    print("\n" + "\n".join(text) + "\n\n" + schedule + "\n")

    overlay_path = os.path.join(FLAGS.run_dir, "overlays.png")
    _compare_overlays(FLAGS.run_dir, runs, val_data, scheme, overlay_path, FLAGS.overlays)
    results_md = os.path.join(FLAGS.run_dir, "RESULTS.md")
    curves_path = os.path.join(FLAGS.run_dir, "curves.png")
    plot_curves({runs[n][0]: os.path.join(FLAGS.run_dir, n, "history.csv") for n in runs},
                curves_path)
    experiments.log(f"curves: {curves_path}")
    _write_results(results_md, rows, scheme, FLAGS, time.time() - start, overlay_path,
                   schedule)
    experiments.log(f"results: {results_md}")
    experiments.log(f"overlays: {overlay_path}")
    for name in runs:
        experiments.log(f"metrics: {os.path.join(FLAGS.run_dir, name, 'eval_val', 'metrics.json')}")
    experiments.log(f"total time {time.time() - start:.0f} s")
    return 0


def _compare_overlays(run_dir, runs, val_data, scheme, path, count):
    """(a), (b), (c) side by side on the same validation images."""
    if count <= 0:
        return
    from coseg_tf import evaluation, run_dir as run_dir_lib, visualize
    from pipelines import streams

    predictors = {}
    for name, (label, _) in runs.items():
        network, _ = run_dir_lib.load_network(os.path.join(run_dir, name), "last")
        predictors[label.split(",")[0]] = evaluation.network_predict_fn(network)
    examples, titles = [], []
    for element in streams.eval_dataset(val_data, scheme=scheme).take(count):
        preds = {}
        for label, fn in predictors.items():
            probs = evaluation.predict_probabilities(fn, element["image"],
                                                     element["human_region"])
            preds[label] = probs[0].numpy().argmax(-1)
        examples.append((element["image"][0].numpy(), element["labels"][0].numpy(), preds))
        titles.append(element["id"][0].numpy().decode())
    visualize.compare_overlay_grid(examples, scheme.class_names, path, titles=titles)


def plot_curves(histories, path):
    """Training curves of the runs (history.csv rows, one per checkpoint interval).

    Left: each loss term; right: mining precision beside its chance level (runs that
    track it, i.e. coseg with --diagnostics).
    """
    import csv

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_mine) = plt.subplots(1, 2, figsize=(11, 4))
    for label, csv_path in histories.items():
        if not os.path.exists(csv_path):
            continue
        rows = list(csv.DictReader(open(csv_path)))
        steps = _interval_ends(os.path.dirname(csv_path), len(rows))
        name = label.split(",")[0]
        for key, style in (("humanparts", "-"), ("val_humanparts", ":"), ("human", "--"),
                           ("coseg", "-.")):
            if rows and key in rows[0]:
                ax_loss.plot(steps, [float(r[key]) for r in rows], style,
                             label=f"{name} {key}")
        if rows and "mining_precision" in rows[0]:
            ax_mine.plot(steps, [100 * float(r["mining_precision"]) for r in rows], "-o",
                         label=f"{name} mining precision")
            ax_mine.plot(steps, [100 * float(r["mining_chance"]) for r in rows], "--",
                         label=f"{name} random positions in the region")
    # (c) trains 16x the steps of (a) and (b): a log axis shows both.
    ax_loss.set_xscale("log")
    ax_loss.set_xlabel("step after the warm-up (log scale)")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Loss terms (dotted: validation)")
    ax_loss.legend(fontsize=7)
    ax_mine.set_xlabel("step after the warm-up")
    ax_mine.set_ylabel("%")
    ax_mine.set_title("Mining precision")
    ax_mine.legend(fontsize=7)
    for ax in (ax_loss, ax_mine):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _interval_ends(model_dir, count):
    """The step at the end of each of a run's first `count` checkpoint intervals."""
    import json

    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    every, total = config["checkpoint_every"], config["steps"]
    return [min((i + 1) * every, total) for i in range(count)]


def _write_results(path, rows, scheme, flags_, seconds, overlay_path, schedule):
    from coseg_tf import evaluation

    lines = ["# Demo results (synthetic data, small CPU setting)", "",
             f"Scheme `{scheme.name}`; mean IoU over the parts, background and 'other' "
             "left out (the paper's Table 2 layout). Final checkpoints, no selection on "
             "validation.", "",
             evaluation.markdown_table(rows, scheme),
             "", f"![(a), (b), (c) side by side]({os.path.basename(overlay_path)})", "",
             "![Training curves](curves.png)", "",
             f"Data: {flags_.num_images} synthetic images of {flags_.image_size} px, "
             f"seed {flags_.data_seed}. Recipe: `{flags_.recipe}`; every run starts "
             "with a supervised warm-up on its labeled images ((a) and (b) share theirs), "
             f"then trains its method. {schedule} This invocation of the demo took "
             f"{seconds / 60:.1f} min (runs an earlier one finished are not redone).", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    define_flags()
    sys.exit(app.run(main))
