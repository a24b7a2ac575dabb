"""A grid of training runs, evaluated the same way, aggregated over labeled-set seeds.

    python tools/sweep.py --num_labeled=10,20,50 --seeds=0,1,2 --methods=supervised,coseg \
        --run_dir=runs/sweep [--recipe=recipes/cpu_small.flags] [--steps=N]

Every run (method x n_f x seed, plus the all-labels ceiling `supervised_all`) trains in
its own directory `RUN_DIR/<method>_nf<N>_seed<S>` with the same recipe and the same
number of steps, keeping a checkpoint per interval. Each is evaluated on val at its
final checkpoint (no checkpoint is picked on the validation set) and at its last three
checkpoints, whose mean is reported beside it (DESIGN §6). A finished run (DONE file,
metrics written) is not redone when the sweep is restarted.

Writes RUN_DIR/SWEEP.md (Table 2's layout, mean ± std over seeds, final and
last-three), RUN_DIR/sweep.json (every number) and RUN_DIR/figure4.png (mean IoU against
n_f, one line per method, error bars = std over seeds, the ceiling as a line).
Extra methods (`coseg_alpha0`: L_coseg only; `coseg_beta0`: L_human only) are the
ablations DESIGN §6 asks for; `gmp` and `em_adapt` are Table 2's baselines that read
the unlabeled images' image-level labels (marked so in the table).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402

from tools import experiments  # noqa: E402  (turns oneDNN on: before TensorFlow)

FLAGS = flags.FLAGS

# name -> training overrides (on top of the recipe)
METHODS = {
    "supervised": {"method": "supervised"},
    "coseg": {"method": "coseg"},
    "coseg_beta0": {"method": "coseg", "beta": 0.0},    # L_human only
    "coseg_alpha0": {"method": "coseg", "alpha": 0.0},  # L_coseg only
    # alpha = beta = 1: the paper's 0.001 on DESIGN's per-image MEAN losses gives L_coseg
    # a gradient ~1000x smaller than L_humanparts' (docs/RESULTS.md); the same ratio
    # between L_human and L_coseg, both on L_humanparts' scale, and its ablations.
    "coseg_w1": {"method": "coseg", "alpha": 1.0, "beta": 1.0},
    "coseg_w1_beta0": {"method": "coseg", "alpha": 1.0, "beta": 0.0},   # L_human only
    "coseg_w1_alpha0": {"method": "coseg", "alpha": 0.0, "beta": 1.0},  # L_coseg only
    # Table 2's baselines that read the unlabeled images' image-level labels
    "gmp": {"method": "gmp"},
    "em_adapt": {"method": "em_adapt"},
}


def define_flags():
    flags.DEFINE_list("num_labeled", ["10", "20", "50", "100"], "Values of n_f.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Labeled-set seeds.")
    flags.DEFINE_list("methods", ["supervised", "coseg"],
                      f"Methods, among {', '.join(METHODS)}.")
    flags.DEFINE_boolean("ceiling", True, "Also the all-labels supervised run (c).")
    flags.DEFINE_string("recipe", "recipes/cpu_small.flags", "Training recipe (flag file).")
    flags.DEFINE_integer("steps", None, "Training steps of every run (default: recipe's).")
    flags.DEFINE_string("run_dir", "runs/sweep", "Where the runs and the tables go.")
    flags.DEFINE_string("data_dir", "data/synthetic", "Synthetic data (as make demo).")
    flags.DEFINE_integer("num_images", 300, "Synthetic images (train + val).")
    flags.DEFINE_integer("image_size", 160, "Synthetic image size.")
    flags.DEFINE_integer("data_seed", 0, "Seed of the synthetic data.")
    flags.DEFINE_string("train_data", None, "TFRecords instead of the synthetic data.")
    flags.DEFINE_string("val_data", None, "Validation TFRecords (with --train_data).")
    flags.DEFINE_integer("last_k", 3, "Checkpoints averaged in the 'last three' column.")
    flags.DEFINE_integer("warmup_steps", 0,
                         "Supervised warm-up steps on each labeled set before the methods "
                         "(0 = none): one warm-up run per (n_f, seed), shared by every "
                         "method, which then trains --steps more steps from it.")
    flags.DEFINE_boolean("aggregate_only", False,
                         "Train nothing: tabulate the finished runs of the grid (e.g. "
                         "after several sweep processes shared one --run_dir).")
    flags.DEFINE_boolean("dry_run", False, "Only list the runs.")


def warmup_name(n, seed):
    return f"warmup_nf{n}_seed{seed}" if n is not None else "warmup_all"


def grid(num_labeled, seeds, methods, ceiling, warmup=False):
    """[(run name, label, n_f or None, seed, overrides)] in the order they are trained.

    With `warmup`, each run's overrides name its warm-up run (`warmup_name`) under
    "warmup"; `main` trains that first and starts the run from it.
    """
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"--methods: unknown method {m!r}; choose from "
                             f"{', '.join(METHODS)}")
    runs = []
    for n in num_labeled:
        for seed in seeds:
            for m in methods:
                runs.append((f"{m}_nf{n}_seed{seed}", m, n, seed,
                             dict(METHODS[m], num_labeled=n, labeled_seed=seed)))
    if ceiling:
        runs.append(("supervised_all", "supervised_all", None, 0,
                     {"method": "supervised"}))
    if warmup:
        runs = [(name, m, n, seed, dict(o, warmup=warmup_name(n, seed)))
                for name, m, n, seed, o in runs]
    return runs


def evaluate_checkpoints(model_dir, val_data, last_k):
    """{checkpoint name: metrics} of the final and the last `last_k` interval checkpoints."""
    from coseg_tf import evaluation

    out_path = os.path.join(model_dir, "sweep_eval.json")
    if os.path.exists(out_path):
        return json.load(open(out_path))
    ckpts = sorted(glob.glob(os.path.join(model_dir, "checkpoints", "epoch-*.weights.h5")),
                   key=lambda p: int(re.search(r"epoch-(\d+)", p).group(1)))
    results = {}
    for path in ["last"] + ckpts[-last_k:]:
        name = "last" if path == "last" else os.path.basename(path).split(".")[0]
        metrics = evaluation.evaluate(evaluation.EvalConfig(
            eval_data=val_data, model_dir=model_dir, checkpoint=path,
            output_dir=os.path.join(model_dir, f"eval_val_{name}"), verbose=0))
        results[name] = {"iou": metrics["iou"], "part_mean_iou": metrics["part_mean_iou"],
                         "mean_iou": metrics["mean_iou"]}
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, out_path)
    return results


def mining_summary(model_dir):
    """Mining precision and chance over the last interval of a coseg run, or None.

    A value is None where it is undefined (nothing mined in that interval), never 0:
    the means over seeds leave it out and sweep.json holds null.
    """
    from coseg_tf import run_dir

    rows = run_dir.read_history(model_dir)
    if not rows or "mining_precision" not in rows[-1]:
        return None
    return {k: v for k, v in rows[-1].items() if k.startswith("mining_")}


def run_result(model_dir, val_data, last_k):
    """What the tables read of a finished run: its checkpoint evaluations and mining."""
    return {"eval": evaluate_checkpoints(model_dir, val_data, last_k),
            "mining": mining_summary(model_dir)}


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def aggregate(results, runs, class_names, parts):
    """Rows of mean ± std over seeds, per (method, n_f), for the final and last-k views."""
    table = {}
    for name, method, n, seed, _ in runs:
        if name not in results:
            continue
        key = (method, n)
        entry = table.setdefault(key, {"seeds": [], "final": [], "lastk": [], "mining": []})
        evals = results[name]["eval"]
        entry["seeds"].append(seed)
        entry["final"].append(evals["last"])
        others = [v for k, v in evals.items() if k != "last"]
        entry["lastk"].append({
            "iou": {c: _mean_std([o["iou"].get(c) for o in others])[0] for c in class_names},
            "part_mean_iou": _mean_std([o["part_mean_iou"] for o in others])[0],
        } if others else evals["last"])
        if results[name]["mining"]:
            entry["mining"].append(results[name]["mining"])
    rows = []
    for (method, n), entry in table.items():
        row = {"method": method, "num_labeled": n, "seeds": entry["seeds"]}
        for view in ("final", "lastk"):
            ms = entry[view]
            row[view] = {c: _mean_std([m["iou"].get(c) for m in ms]) for c in parts}
            row[view]["mean"] = _mean_std([m["part_mean_iou"] for m in ms])
        if entry["mining"]:
            keys = entry["mining"][0].keys()
            row["mining"] = {k: _mean_std([m.get(k) for m in entry["mining"]]) for k in keys}
        rows.append(row)
    return rows


def _reads_image_labels(name):
    """Whether the sweep method `name` trains a method that reads image-level labels."""
    from coseg_tf import trainer as trainer_lib

    return METHODS.get(name, {}).get("method") in trainer_lib.IMAGE_LABEL_METHODS


def _cell(ms):
    mean, std = ms
    if mean is None:
        return "-"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def markdown(rows, parts, num_train):
    lines = ["| Method | n_f | seeds | " + " | ".join(parts) + " | mean | mean (last 3) |",
             "|---|---:|---:|" + "---:|" * (len(parts) + 2)]
    order = sorted(rows, key=lambda r: (r["num_labeled"] is None,
                                        r["num_labeled"] or 0, r["method"]))
    for r in order:
        n = r["num_labeled"] if r["num_labeled"] is not None else num_train
        cells = [_cell(r["final"][p]) for p in parts]
        label = r["method"] + (" (image labels)" if _reads_image_labels(r["method"]) else "")
        lines.append(f"| {label} | {n} | {len(r['seeds'])} | " + " | ".join(cells)
                     + f" | {_cell(r['final']['mean'])} | {_cell(r['lastk']['mean'])} |")
    mining = [r for r in order if "mining" in r]
    if mining:
        lines += ["", "Mining precision over the last checkpoint interval (share of mined "
                  "positions whose hidden class is the class they were mined for) beside "
                  "what random positions inside the target's human region give:", "",
                  "| Method | n_f | precision | chance | per class |", "|---|---:|---:|---:|---|"]
        for r in mining:
            m = r["mining"]
            per = ", ".join(f"{k.split('/')[1]} {_cell(v)}" for k, v in m.items() if "/" in k)
            lines.append(f"| {r['method']} | {r['num_labeled']} | "
                         f"{_cell(m['mining_precision'])} | {_cell(m['mining_chance'])} | "
                         f"{per} |")
    return "\n".join(lines)


def figure4(rows, path, num_train):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    methods = sorted({r["method"] for r in rows if r["num_labeled"] is not None})
    for m in methods:
        pts = sorted((r["num_labeled"], r["final"]["mean"]) for r in rows
                     if r["method"] == m and r["num_labeled"] is not None)
        xs = [p[0] for p in pts]
        ys = [100 * p[1][0] for p in pts]
        es = [100 * p[1][1] for p in pts]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=m)
    for r in rows:
        if r["num_labeled"] is None and r["final"]["mean"][0] is not None:
            ax.axhline(100 * r["final"]["mean"][0], ls="--", color="grey",
                       label=f"supervised, all {num_train} labels")
    ax.set_xlabel("labeled images n_f")
    ax.set_ylabel("mean IoU of the parts (%)")
    ax.set_title("Mean IoU against n_f (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    del argv
    start = time.time()
    recipe = experiments.read_flagfile(experiments.find_recipe(FLAGS.recipe))
    if FLAGS.train_data:
        train_data, val_data = FLAGS.train_data, FLAGS.val_data
        if not val_data:
            raise app.UsageError("--train_data needs --val_data")
    else:
        train_data, val_data = experiments.prepare_data(
            FLAGS.data_dir, num_images=FLAGS.num_images, image_size=FLAGS.image_size,
            seed=FLAGS.data_seed)
    from pipelines import schema, streams

    num_train = len(streams.read_ids(train_data))
    num_labeled = [int(n) for n in FLAGS.num_labeled]
    bad = [n for n in num_labeled if not 0 < n <= num_train]
    if bad:
        raise app.UsageError(f"--num_labeled: {bad} outside 1..{num_train} (training images)")
    runs = grid(num_labeled, [int(s) for s in FLAGS.seeds], FLAGS.methods, FLAGS.ceiling,
                warmup=FLAGS.warmup_steps > 0)
    if FLAGS.dry_run:
        for r in runs:
            print(r[0] + (f" (from {r[4]['warmup']})" if "warmup" in r[4] else ""))
        return 0
    scheme = schema.get_scheme(recipe.get("parts", "all4"))
    parts = [c for c in scheme.class_names if c not in ("background", "other")]
    results = {}
    for i, (name, method, n, seed, overrides) in enumerate(runs, 1):
        if n is None:
            overrides = dict(overrides, num_labeled=num_train)
        model_dir = os.path.join(FLAGS.run_dir, name)
        if FLAGS.aggregate_only:
            if os.path.exists(os.path.join(model_dir, "DONE")):
                results[name] = run_result(model_dir, val_data, FLAGS.last_k)
            continue
        if "warmup" in overrides:
            # The warm-up: supervised on the same labeled set, trained once and shared
            # by every method of this (n_f, seed); each method starts from its weights.
            warm = overrides.pop("warmup")
            warm_dir = os.path.join(FLAGS.run_dir, warm)
            experiments.train_run(warm_dir, recipe, {
                "method": "supervised", "num_labeled": overrides["num_labeled"],
                "labeled_seed": overrides.get("labeled_seed", 0)},
                train_data, val_data, FLAGS.warmup_steps, recipe_path=FLAGS.recipe)
            overrides = dict(overrides, init="run", init_weights=warm_dir)
        experiments.log(f"run {i}/{len(runs)}: {name}", tag="sweep")
        experiments.train_run(model_dir, recipe, dict(overrides, keep_checkpoints=True),
                              train_data, val_data, FLAGS.steps, recipe_path=FLAGS.recipe)
        results[name] = run_result(model_dir, val_data, FLAGS.last_k)
    rows = aggregate(results, runs, scheme.class_names, parts)
    os.makedirs(FLAGS.run_dir, exist_ok=True)
    with open(os.path.join(FLAGS.run_dir, "sweep.json"), "w") as f:
        json.dump({"runs": results, "rows": rows, "recipe": FLAGS.recipe,
                   "steps": FLAGS.steps or recipe.get("steps")}, f, indent=1, default=str)
    table = markdown(rows, parts, num_train)
    command = "python tools/sweep.py " + " ".join(  # quoted: runs as written
        shlex.quote(f"--{k}={','.join(map(str, v)) if isinstance(v, list) else v}")
        for k, v in (("num_labeled", FLAGS.num_labeled), ("seeds", FLAGS.seeds),
                     ("methods", FLAGS.methods), ("recipe", FLAGS.recipe),
                     ("run_dir", FLAGS.run_dir)))
    if FLAGS.steps:
        command += f" --steps={FLAGS.steps}"  # integers: nothing to quote
    if FLAGS.warmup_steps:
        command += f" --warmup_steps={FLAGS.warmup_steps}"
    with open(os.path.join(FLAGS.run_dir, "SWEEP.md"), "w") as f:
        schedule = (f"Every run: {FLAGS.warmup_steps} supervised warm-up steps on its labeled "
                    f"set (one warm-up per n_f and seed, shared by the methods), then "
                    f"{FLAGS.steps or recipe.get('steps')} steps of the method. "
                    if FLAGS.warmup_steps else "")
        f.write(f"# Sweep\n\n`{command}`\n\n{schedule}Scheme `{scheme.name}`, part IoU in %, "
                "mean ± std over labeled-set seeds, final checkpoint; 'last 3' is the mean "
                f"of the last three interval checkpoints.\n\n{table}\n\n"
                "![Figure 4](figure4.png)\n")
    figure4(rows, os.path.join(FLAGS.run_dir, "figure4.png"), num_train)
    print(table)
    experiments.log(f"wrote {FLAGS.run_dir}/SWEEP.md, sweep.json, figure4.png in "
                    f"{(time.time() - start) / 60:.1f} min", tag="sweep")
    return 0


if __name__ == "__main__":
    define_flags()
    sys.exit(app.run(main))
