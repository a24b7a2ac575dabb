"""A grid of training runs, evaluated the same way, aggregated over labeled-set seeds.

    python tools/sweep.py --num_labeled=10,20,50 --seeds=0,1,2 --methods=supervised,coseg \
        --run_dir=runs/sweep --results_dir=docs/sweep [--parts=all4] [--recipe=...]

Every run (part scheme x method x n_f x seed, plus the all-labels ceiling
`supervised_all` of each scheme) trains in its own directory
`RUN_DIR/<parts>/<method>_nf<N>_seed<S>` with the same recipe and the same number of
steps, keeping a checkpoint per interval. With --warmup_steps (the demo's schedule,
`experiments.WARMUP_STEPS`, by default) every run of a labeled set starts from one
supervised warm-up on it, shared by all the methods, the baseline included (DESIGN §6).
Each run is evaluated on val at its final checkpoint (no checkpoint is picked on the
validation set) and at its last three checkpoints, whose mean is reported beside it.

Results that outlive the machine: with --results_dir each finished run leaves one small
JSON there (`<parts>/<run>.json`: its evaluations, its history.csv rows with the
mining precision of every interval, its config and labeled ids). A run whose JSON is
there is not trained again, on this machine or a fresh one, so a sweep that takes
longer than one session continues where the last one stopped (keep the JSONs in the
repository: docs/sweep/). A finished run directory (DONE, sweep_eval.json) is not
redone either. The warm-up of a labeled set lives only in RUN_DIR: a method added
later on a fresh machine trains that warm-up again (same seeds; float rounding may
differ).

Writes RUN_DIR/SWEEP.md (per scheme: Table 2's layout or, for head|body|hand|leg, the
paper's Table 1 layout; mean ± std over seeds, final and last-three; each method minus
supervised paired by seed; mining precision
against chance, last interval and over training), RUN_DIR/sweep.json (every number),
RUN_DIR/figure4.png (mean IoU against n_f, error bars = std over seeds, the ceiling as
a line) and RUN_DIR/mining.png (mining precision and chance over training).

Methods (`METHODS`): `supervised`; `coseg` with the paper's α = β = 0.001 and its
ablations `coseg_beta0` (L_human only) and `coseg_alpha0` (L_coseg only); `coseg_w1`,
α = β = 1, its ablations and its mining options (`coseg_w1_inference`, `_prototype`, `_cosine`, `_agreement`,
`_targets2`: `losses.MiningOptions`); `gmp` and `em_adapt`, Table 2's baselines that
read the unlabeled images' image-level labels (marked so in the table); weak-to-strong
consistency, `fixmatch` and `unimatch` (UniMatch's, threshold 0.95, lambda_u = 1), and
coseg on top of them, `coseg_fixmatch` / `coseg_unimatch` (the paper's alpha = beta =
0.001) and `coseg_w1_fixmatch` / `coseg_w1_unimatch` (alpha = beta = 1);
`coseg_scaled` (α = 0.75, β = 0.15: each term's gradient the size of L_humanparts' at
the start, measured), its ablations `coseg_scaled_beta0` / `_alpha0`, the same mining
options on it (`coseg_scaled_inference`, `_prototype`, `_cosine`, `_agreement`,
`_targets2`) and `coseg_scaled_fixmatch`; `supervised_reseed`, supervised with another
training seed (the noise floor). Each entry's
"method" is a method of the objectives' registry (`coseg_tf.objectives`), which says
what it reads.
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

# Mining of L_coseg other than the paper's (losses.MiningOptions): sweep suffix ->
# training overrides
MINING_OPTIONS = {
    "inference": {"mining_features": "inference"},
    "prototype": {"mining_point": "prototype"},
    "cosine": {"mining_distance": "cosine"},
    "agreement": {"mining_agreement": True},
    "targets2": {"mining_targets": 2},
}
_COSEG_W1 = {"method": "coseg", "alpha": 1.0, "beta": 1.0}
_COSEG_SCALED = {"method": "coseg", "alpha": 0.75, "beta": 0.15}

# name -> training overrides (on top of the recipe)
METHODS = {
    "supervised": {"method": "supervised"},
    "coseg": {"method": "coseg"},
    # The noise floor: supervised again on the same labeled set and warm-up, another
    # training seed (initial dropout masks, crop order): how far two runs of one
    # method lie apart with nothing changed but the random draws.
    "supervised_reseed": {"method": "supervised", "seed": 1},
    "coseg_beta0": {"method": "coseg", "beta": 0.0},    # L_human only
    "coseg_alpha0": {"method": "coseg", "alpha": 0.0},  # L_coseg only
    # alpha = beta = 1: the paper's 0.001 on DESIGN's per-image MEAN losses gives L_coseg
    # 0.6 % of L_humanparts' gradient (measured, below); the paper's ratio between
    # L_human and L_coseg at weight 1, and its ablations.
    "coseg_w1": dict(_COSEG_W1),
    "coseg_w1_beta0": dict(_COSEG_W1, beta=0.0),   # L_human only
    "coseg_w1_alpha0": dict(_COSEG_W1, alpha=0.0),  # L_coseg only
    # Each term's gradient equal to L_humanparts' at the start: measured on the demo
    # recipe's first n_f = 10 warm-up (`experiments.gradient_scale`, 8 batches), the
    # unweighted L_coseg's gradient norm is 6.4x L_humanparts' and L_human's 1.3x, so
    # beta = 1 / 6.4 and alpha = 1 / 1.3 (docs/RESULTS.md, "The weight of L_coseg").
    "coseg_scaled": dict(_COSEG_SCALED),
    "coseg_scaled_beta0": dict(_COSEG_SCALED, beta=0.0),   # L_human only
    "coseg_scaled_alpha0": dict(_COSEG_SCALED, alpha=0.0),  # L_coseg only
    # Mining options beside the paper's (MINING_OPTIONS), on coseg_w1, where L_coseg
    # weighs enough to matter, and on coseg_scaled, the recipe v2 sweep's best coseg
    # (issue 12, item 4)
    **{f"coseg_w1_{name}": dict(_COSEG_W1, **option)
       for name, option in MINING_OPTIONS.items()},
    **{f"coseg_scaled_{name}": dict(_COSEG_SCALED, **option)
       for name, option in MINING_OPTIONS.items()},
    # Table 2's baselines that read the unlabeled images' image-level labels
    "gmp": {"method": "gmp"},
    "em_adapt": {"method": "em_adapt"},
    # Weak-to-strong consistency (UniMatch's FixMatch and UniMatch: threshold 0.95,
    # lambda_u = 1), and coseg on top of it: does L_coseg add anything to consistency?
    # With the paper's weights (alpha = beta = 0.001) coseg's terms get < 1 % of the
    # gradient, so the question is asked at alpha = beta = 1 too.
    "fixmatch": {"method": "fixmatch"},
    "unimatch": {"method": "unimatch"},
    "coseg_fixmatch": {"method": "coseg_fixmatch"},
    "coseg_unimatch": {"method": "coseg_unimatch"},
    "coseg_w1_fixmatch": {"method": "coseg_fixmatch", "alpha": 1.0, "beta": 1.0},
    "coseg_w1_unimatch": {"method": "coseg_unimatch", "alpha": 1.0, "beta": 1.0},
    # coseg's terms at the measured gradient scale (coseg_scaled) on top of FixMatch
    "coseg_scaled_fixmatch": {"method": "coseg_fixmatch", "alpha": 0.75, "beta": 0.15},
}


def define_flags():
    flags.DEFINE_list("num_labeled", ["10", "20", "50"], "Values of n_f.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Labeled-set seeds.")
    flags.DEFINE_list("methods", ["supervised", "coseg"],
                      f"Methods, among {', '.join(METHODS)}.")
    flags.DEFINE_list("parts", None, "Part schemes (default: the recipe's --parts), e.g. "
                      "all4 (Table 2) or head,body,hand,leg (Table 1).")
    flags.DEFINE_boolean("ceiling", True, "Also the all-labels supervised run (c).")
    flags.DEFINE_string("recipe", experiments.DEMO_RECIPE, "Training recipe (flag file).")
    flags.DEFINE_integer("steps", None, "Training steps of every run after its warm-up "
                         "(default: the recipe's).")
    flags.DEFINE_string("run_dir", "runs/sweep", "Where the runs and the tables go.")
    flags.DEFINE_string("results_dir", None,
                        "Where each finished run's small result JSON goes (e.g. "
                        "docs/sweep); a run whose JSON is there is not trained again.")
    flags.DEFINE_string("data_dir", "data/synthetic", "Synthetic data (as make demo).")
    flags.DEFINE_integer("num_images", experiments.DEMO_NUM_IMAGES,
                         "Synthetic images (train + val).")
    flags.DEFINE_integer("image_size", experiments.DEMO_IMAGE_SIZE, "Synthetic image size.")
    flags.DEFINE_integer("data_seed", 0, "Seed of the synthetic data.")
    flags.DEFINE_string("train_data", None, "TFRecords instead of the synthetic data.")
    flags.DEFINE_string("val_data", None, "Validation TFRecords (with --train_data).")
    flags.DEFINE_integer("last_k", 3, "Checkpoints averaged in the 'last three' column.")
    flags.DEFINE_integer("warmup_steps", experiments.WARMUP_STEPS,
                         "Supervised warm-up steps on each labeled set before the methods "
                         "(0 = none): one warm-up run per (parts, n_f, seed), shared by "
                         "every method, which then trains --steps more steps from it.")
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
    _write_json(out_path, results)
    return results


def _write_json(path, value):
    from coseg_tf import run_dir

    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(run_dir.to_json(value, indent=1, default=str))  # undefined -> null
    os.replace(tmp, path)


def read_history(model_dir):
    """history.csv rows of a run, {column: float or None (undefined)}, one per interval."""
    from coseg_tf import run_dir

    return run_dir.read_history(model_dir)


def mining_summary(history):
    """Mining precision and chance over the last interval of a coseg run, or None.

    A value is None where it is undefined (nothing mined in that interval), never 0:
    the means over seeds leave it out and sweep.json holds null.
    """
    if not history or "mining_precision" not in history[-1]:
        return None
    return {k: v for k, v in history[-1].items() if k.startswith("mining_")}


def run_result(model_dir, val_data, last_k):
    """What the tables read of a finished run: checkpoint evaluations, history, mining."""
    history = read_history(model_dir)
    result = {"eval": evaluate_checkpoints(model_dir, val_data, last_k),
              "mining": mining_summary(history), "history": history}
    config_path = os.path.join(model_dir, "config.json")
    if os.path.exists(config_path):
        result["config"] = json.load(open(config_path))
    ids_path = os.path.join(model_dir, "labeled_ids.txt")
    if os.path.exists(ids_path) and result.get("config", {}).get("num_labeled", 0) <= 100:
        result["labeled_ids"] = open(ids_path).read().split()
    return result


def _mean_std(values):
    """(mean, sample standard deviation) of the defined values; std 0.0 for one value,
    (None, None) for none."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def aggregate(results, runs, class_names, parts):
    """Rows of mean ± std over seeds, per (method, n_f), for the final and last-k views."""
    table = {}
    for name, method, n, seed, _ in runs:
        if name not in results:
            continue
        key = (method, n)
        entry = table.setdefault(key, {"seeds": [], "final": [], "lastk": [], "mining": [],
                                       "mining_curve": [], "confident": []})
        evals = results[name]["eval"]
        entry["seeds"].append(seed)
        entry["final"].append(evals["last"])
        others = [v for k, v in evals.items() if k != "last"]
        entry["lastk"].append({
            "iou": {c: _mean_std([o["iou"].get(c) for o in others])[0] for c in class_names},
            "part_mean_iou": _mean_std([o["part_mean_iou"] for o in others])[0],
        } if others else evals["last"])
        history = results[name].get("history") or []
        if history and history[-1].get("pseudo_confident") is not None:
            # the consistency methods: how much of the region their pseudo-labels cover
            entry["confident"].append([r.get("pseudo_confident") for r in history])
        if results[name]["mining"]:
            entry["mining"].append(results[name]["mining"])
            entry["mining_curve"].append(
                [(r.get("mining_precision"), r.get("mining_chance"))
                 for r in results[name].get("history", [])])
    rows = []
    for (method, n), entry in table.items():
        row = {"method": method, "num_labeled": n, "seeds": entry["seeds"]}
        for view in ("final", "lastk"):
            ms = entry[view]
            row[view] = {c: _mean_std([m["iou"].get(c) for m in ms]) for c in parts}
            row[view]["mean"] = _mean_std([m["part_mean_iou"] for m in ms])
            if "other" in class_names:
                row[view]["other"] = _mean_std([m["iou"].get("other") for m in ms])
        if entry["mining"]:
            keys = entry["mining"][0].keys()
            row["mining"] = {k: _mean_std([m.get(k) for m in entry["mining"]]) for k in keys}
            length = min(len(c) for c in entry["mining_curve"])
            row["mining_curve"] = [
                {"precision": _mean_std([c[i][0] for c in entry["mining_curve"]]),
                 "chance": _mean_std([c[i][1] for c in entry["mining_curve"]])}
                for i in range(length)]
        if entry["confident"]:
            length = min(len(c) for c in entry["confident"])
            row["pseudo_confident"] = [_mean_std([c[i] for c in entry["confident"]])
                                       for i in range(length)]
        rows.append(row)
    return rows


def paired(results, runs, baseline="supervised"):
    """Each method minus `baseline` on the same labeled-set seed (same warm-up, same
    labeled images), final checkpoint, part mean IoU (a fraction).

    Returns rows {"method", "num_labeled", "seeds", "diffs", "mean_std"} for every
    (method, n_f) other than the baseline with at least one seed that the baseline has
    too; `diffs` follow `seeds`, and `mean_std` is (mean, sample std) as `_mean_std`.
    The seed spread of one method is larger than most effects here, so the docs compare
    methods this way (docs/RESULTS.md).
    """
    final = {(method, n, seed): results[name]["eval"]["last"]["part_mean_iou"]
             for name, method, n, seed, _ in runs if name in results}
    rows = {}
    for (method, n, seed), value in final.items():
        base = final.get((baseline, n, seed))
        if method == baseline or n is None or base is None or value is None:
            continue
        row = rows.setdefault((method, n), {"method": method, "num_labeled": n,
                                            "seeds": [], "diffs": []})
        row["seeds"].append(seed)
        row["diffs"].append(value - base)
    for row in rows.values():
        row["mean_std"] = _mean_std(row["diffs"])
    return list(rows.values())


def markdown_paired(rows, baseline="supervised"):
    """The paired differences of `paired` as a table, in IoU points."""
    if not rows:
        return ""
    lines = [f"Paired by seed: method − {baseline} on the same labeled set and warm-up, "
             "final checkpoint, part mean IoU in points; by seed, then mean ± std:", "",
             "| Method | n_f | seeds | by seed | mean ± std |", "|---|---:|---|---|---:|"]
    for r in _ordered(rows):
        by_seed = ", ".join(f"{100 * d:+.1f}" for d in r["diffs"])
        lines.append(f"| {_label(r['method'])} | {r['num_labeled']} | "
                     f"{', '.join(map(str, r['seeds']))} | {by_seed} | "
                     f"{_cell(r['mean_std'], sign='+')} |")
    return "\n".join(lines)


def _reads_image_labels(name):
    """Whether the sweep method `name` trains a method that reads image-level labels
    (its objective's needs, `coseg_tf.objectives`)."""
    from coseg_tf import objectives

    method = METHODS.get(name, {}).get("method")
    return method in objectives.REGISTRY and objectives.get(method).needs.image_labels


def _cell(ms, sign="-"):
    """'mean ± std' in points of a (mean, std) pair of fractions; sign="+" signs the mean."""
    mean, std = ms
    if mean is None:
        return "-"
    return f"{100 * mean:{sign}.1f} ± {100 * std:.1f}"


def _ordered(rows):
    return sorted(rows, key=lambda r: (r["num_labeled"] is None, r["num_labeled"] or 0,
                                       r["method"] != "supervised", r["method"]))


def _label(method):
    return method + (" (image labels)" if _reads_image_labels(method) else "")


def markdown(rows, parts, num_train):
    """Table 2's layout (one model for all parts): parts, mean, mean of the last 3."""
    lines = ["| Method | n_f | seeds | " + " | ".join(parts) + " | mean | mean (last 3) |",
             "|---|---:|---:|" + "---:|" * (len(parts) + 2)]
    for r in _ordered(rows):
        n = r["num_labeled"] if r["num_labeled"] is not None else num_train
        cells = [_cell(r["final"][p]) for p in parts]
        lines.append(f"| {_label(r['method'])} | {n} | {len(r['seeds'])} | "
                     + " | ".join(cells)
                     + f" | {_cell(r['final']['mean'])} | {_cell(r['lastk']['mean'])} |")
    return "\n".join(lines)


def markdown_table1(rows_by_part, num_train):
    """The paper's Table 1 layout: one 3-class model per part; each part's IoU and its
    'others' (other human region) IoU, final checkpoint and mean of the last three."""
    parts = [p for p in ("head", "body", "hand", "leg") if p in rows_by_part]
    keys = sorted({(r["method"], r["num_labeled"]) for p in parts for r in rows_by_part[p]},
                  key=lambda k: (k[1] is None, k[1] or 0, k[0] != "supervised", k[0]))
    lines = ["| Method | n_f | " + " | ".join(
        f"{p} | {p} others | {p} (last 3)" for p in parts) + " |",
        "|---|---:|" + "---:|" * (3 * len(parts))]
    for method, n in keys:
        cells = []
        for p in parts:
            row = next((r for r in rows_by_part[p]
                        if (r["method"], r["num_labeled"]) == (method, n)), None)
            if row is None:
                cells += ["-", "-", "-"]
                continue
            cells += [_cell(row["final"][p]), _cell(row["final"].get("other", (None, None))),
                      _cell(row["lastk"][p])]
        lines.append(f"| {_label(method)} | {n if n is not None else num_train} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_mining(rows):
    """Mining precision against chance: the last interval, per class, and over training."""
    mining = [r for r in _ordered(rows) if "mining" in r]
    if not mining:
        return ""
    lines = ["Mining precision (share of mined positions whose hidden class is the class "
             "they were mined for) beside what random positions inside the target's human "
             "region give (chance), over the last checkpoint interval, mean ± std over "
             "seeds; then the precision ÷ chance at the first, middle and last interval:", "",
             "| Method | n_f | precision | chance | per class | ÷ chance over training |",
             "|---|---:|---:|---:|---|---|"]
    for r in mining:
        m = r["mining"]
        per = ", ".join(f"{k.split('/')[1]} {_cell(v)}" for k, v in m.items() if "/" in k)
        curve = r.get("mining_curve") or []
        ratios = []
        for i in sorted({0, len(curve) // 2, len(curve) - 1}) if curve else []:
            p, c = curve[i]["precision"][0], curve[i]["chance"][0]
            ratios.append("-" if p is None or not c else f"{p / c:.2f}")
        lines.append(f"| {r['method']} | {r['num_labeled']} | "
                     f"{_cell(m['mining_precision'])} | {_cell(m['mining_chance'])} | "
                     f"{per} | {' → '.join(ratios)} |")
    return "\n".join(lines)


def markdown_consistency(rows):
    """The consistency methods' confident pseudo-labels: last interval and over training."""
    rows = [r for r in _ordered(rows) if r.get("pseudo_confident")]
    if not rows:
        return ""
    lines = ["Share of the weak view's human region whose pseudo-label passes the "
             "confidence threshold (the teacher's probability, 0.95 by default), over the "
             "last checkpoint interval, mean ± std over seeds, and at the first, middle "
             "and last interval. Near 0, the consistency term is near 0 and the method "
             "trains as its labeled part alone:", "",
             "| Method | n_f | confident | over training |", "|---|---:|---:|---|"]
    for r in rows:
        curve = r["pseudo_confident"]
        points = [curve[i][0] for i in sorted({0, len(curve) // 2, len(curve) - 1})]
        lines.append(f"| {r['method']} | {r['num_labeled']} | {_cell(curve[-1])} | "
                     + " → ".join("-" if p is None else f"{100 * p:.1f}" for p in points)
                     + " |")
    return "\n".join(lines)


def figure4(rows, path, num_train):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
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
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mining_figure(rows, path):
    """Mining precision (solid) and chance (dashed) over training, mean over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _ordered(rows) if r.get("mining_curve")]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        curve = r["mining_curve"]
        xs = list(range(1, len(curve) + 1))
        line, = ax.plot(xs, [100 * (c["precision"][0] or 0) for c in curve], "-o", ms=3,
                        label=f"{r['method']} n_f={r['num_labeled']}")
        ax.plot(xs, [100 * (c["chance"][0] or 0) for c in curve], "--",
                color=line.get_color())
    ax.set_xlabel("checkpoint interval")
    ax.set_ylabel("%")
    ax.set_title("Mining precision (solid) and chance (dashed) over training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _gradient_scale(recipe, train_data, schemes, num_labeled):
    """`experiments.gradient_scale` on the first warm-up of the sweep, if it is here."""
    if not FLAGS.warmup_steps or FLAGS.aggregate_only:
        return None
    parts = schemes[0]
    warm = os.path.join(FLAGS.run_dir, parts, warmup_name(num_labeled[0], FLAGS.seeds[0]))
    if not os.path.exists(os.path.join(warm, "DONE")):
        return None
    ids = open(os.path.join(warm, "labeled_ids.txt")).read().split()
    scale = experiments.gradient_scale(
        warm, train_data, labeled_ids=ids, batch_labeled=int(recipe["batch_labeled"]),
        batch_unlabeled=int(recipe["batch_unlabeled"]), crop_size=int(recipe["crop_size"]),
        min_scale=float(recipe.get("min_scale", 0.75)),
        max_scale=float(recipe.get("max_scale", 1.25)))
    return dict(scale, run=f"{parts}/{os.path.basename(warm)}")


def check_saved(path, result, run_root, name, recipe, overrides, train_data, val_data):
    """A kept result JSON, if it is a run of the setting this sweep runs.

    Raises:
      app.UsageError: it was run with other flags (its "config", e.g. an older recipe)
        or another warm-up: the tables would mix two settings. The file is left as it is.
    """
    from coseg_tf import run_dir

    _, _, planned = experiments.warmup_plan(run_root, dict(overrides, keep_checkpoints=True),
                                            FLAGS.warmup_steps)
    config = experiments.run_config(os.path.join(run_root, name), recipe, planned,
                                    train_data, val_data, FLAGS.steps)
    changes = experiments.setting_changes(result.get("config") or {}, config)
    warmup = result.get("warmup_steps")
    if warmup is not None and warmup != FLAGS.warmup_steps:
        changes.append(("warmup_steps", warmup, FLAGS.warmup_steps))
    if changes:
        raise app.UsageError(
            f"{path} is a run of another setting than this sweep's "
            f"({run_dir.format_changes(changes)}): choose another --results_dir "
            "for this setting (the file is kept as it is)")
    return result


def _result_path(results_dir, parts, name):
    return os.path.join(results_dir, parts, name + ".json") if results_dir else None


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
    schemes = FLAGS.parts or [recipe.get("parts", "all4")]
    for name in schemes:
        try:
            schema.get_scheme(name)
        except ValueError as e:
            raise app.UsageError(f"--parts: {e}") from None
    try:
        runs = grid(num_labeled, [int(s) for s in FLAGS.seeds], FLAGS.methods,
                    FLAGS.ceiling, warmup=FLAGS.warmup_steps > 0)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if FLAGS.dry_run:
        for parts in schemes:
            for r in runs:
                print(f"{parts}/{r[0]}"
                      + (f" (from {parts}/{r[4]['warmup']})" if "warmup" in r[4] else ""))
        return 0
    steps = FLAGS.steps or int(recipe.get("steps"))
    results_by_part, rows_by_part, paired_by_part = {}, {}, {}
    total = len(runs) * len(schemes)
    done = 0
    for parts in schemes:
        scheme = schema.get_scheme(parts)
        run_root = os.path.join(FLAGS.run_dir, parts)
        results = results_by_part[parts] = {}
        for name, method, n, seed, overrides in runs:
            done += 1
            overrides = dict(overrides, parts=parts)
            if n is None:
                overrides = dict(overrides, num_labeled=num_train)
            model_dir = os.path.join(run_root, name)
            saved = _result_path(FLAGS.results_dir, parts, name)
            if saved and os.path.exists(saved):
                results[name] = check_saved(saved, json.load(open(saved)), run_root, name,
                                            recipe, overrides, train_data, val_data)
                continue
            if FLAGS.aggregate_only:
                if os.path.exists(os.path.join(model_dir, "DONE")):
                    results[name] = run_result(model_dir, val_data, FLAGS.last_k)
                continue
            experiments.log(f"run {done}/{total}: {parts}/{name}", tag="sweep")
            try:
                experiments.train_with_warmup(
                    run_root, name, recipe, dict(overrides, keep_checkpoints=True),
                    train_data, val_data, warmup_steps=FLAGS.warmup_steps,
                    steps=FLAGS.steps, recipe_path=FLAGS.recipe)
            except experiments.SettingError as e:
                raise app.UsageError(str(e)) from None
            results[name] = run_result(model_dir, val_data, FLAGS.last_k)
            results[name]["warmup_steps"] = FLAGS.warmup_steps
            if saved:
                os.makedirs(os.path.dirname(saved), exist_ok=True)
                _write_json(saved, results[name])
        part_names = [c for c in scheme.class_names if c not in ("background", "other")]
        rows_by_part[parts] = aggregate(results, runs, scheme.class_names, part_names)
        paired_by_part[parts] = paired(results, runs)
        found = {(r["method"], r["num_labeled"]) for r in rows_by_part[parts]}
        missing = [f"{m} (n_f {'all' if n is None else n})" for m, n in
                   dict.fromkeys((m, n) for _, m, n, _, _ in runs) if (m, n) not in found]
        if missing:
            experiments.log(f"{parts}: no finished run or kept result of "
                            f"{', '.join(missing)}: left out of the tables", tag="sweep")

    os.makedirs(FLAGS.run_dir, exist_ok=True)
    scale = _gradient_scale(recipe, train_data, schemes, num_labeled)
    _write_json(os.path.join(FLAGS.run_dir, "sweep.json"), {
        "runs": results_by_part, "rows": rows_by_part, "paired": paired_by_part,
        "recipe": FLAGS.recipe,
        "steps": steps, "warmup_steps": FLAGS.warmup_steps, "gradient_scale": scale})
    command = "python tools/sweep.py " + " ".join(  # quoted: runs as written
        shlex.quote(f"--{k}={','.join(map(str, v)) if isinstance(v, list) else v}")
        for k, v in (("parts", schemes), ("num_labeled", FLAGS.num_labeled),
                     ("seeds", FLAGS.seeds), ("methods", FLAGS.methods),
                     ("recipe", FLAGS.recipe), ("run_dir", FLAGS.run_dir)))
    if FLAGS.results_dir:
        command += " " + shlex.quote(f"--results_dir={FLAGS.results_dir}")
    if FLAGS.steps:
        command += f" --steps={FLAGS.steps}"
    command += f" --warmup_steps={FLAGS.warmup_steps}"
    schedule = (f"Every run: {FLAGS.warmup_steps} supervised warm-up steps on its labeled "
                f"set (one warm-up per scheme, n_f and seed, shared by the methods), then "
                f"{steps} steps of the method. " if FLAGS.warmup_steps else "")
    text = [f"# Sweep\n\n`{command}`\n\n{schedule}Part IoU in %, mean ± std over "
            "labeled-set seeds, final checkpoint; 'last 3' is the mean of the last three "
            "interval checkpoints.\n"]
    per_part = [p for p in schemes if p in ("head", "body", "hand", "leg")]
    if per_part:
        text += ["## Table 1 layout: one model per part\n",
                 markdown_table1({p: rows_by_part[p] for p in per_part}, num_train), ""]
    for parts in schemes:
        if parts in per_part:
            continue
        scheme = schema.get_scheme(parts)
        part_names = [c for c in scheme.class_names if c not in ("background", "other")]
        text += [f"## Scheme `{parts}`\n", markdown(rows_by_part[parts], part_names,
                                                    num_train), ""]
    for parts in schemes:
        table = markdown_paired(paired_by_part[parts])
        if table:
            text += [f"### Paired by seed, `{parts}`\n", table, ""]
        mining = markdown_mining(rows_by_part[parts])
        if mining:
            text += [f"### Mining, `{parts}`\n", mining, ""]
        consistency = markdown_consistency(rows_by_part[parts])
        if consistency:
            text += [f"### Pseudo-labels, `{parts}`\n", consistency, ""]
    if scale:
        text += ["### The weights of the unlabeled terms\n",
                 f"On the warm-up `{scale['run']}` ({scale['batches']} training batches), "
                 f"||∇L_coseg|| / ||∇L_humanparts|| = {scale['coseg']:.2f} and "
                 f"||∇L_human|| / ||∇L_humanparts|| = {scale['human']:.2f} at weight 1: "
                 f"the paper's β = 0.001 gives L_coseg {0.001 * scale['coseg']:.4f} of "
                 "L_humanparts' gradient; `coseg_w1` (α = β = 1) gives it "
                 f"{scale['coseg']:.2f}.", ""]
    main_parts = next((p for p in schemes if p not in per_part), schemes[0])
    figure4(rows_by_part[main_parts], os.path.join(FLAGS.run_dir, "figure4.png"), num_train)
    text.append("![Figure 4](figure4.png)\n")
    if mining_figure(rows_by_part[main_parts], os.path.join(FLAGS.run_dir, "mining.png")):
        text.append("![Mining precision over training](mining.png)\n")
    with open(os.path.join(FLAGS.run_dir, "SWEEP.md"), "w") as f:
        f.write("\n".join(text))
    print("\n".join(text))
    experiments.log(f"wrote {FLAGS.run_dir}/SWEEP.md, sweep.json, figure4.png in "
                    f"{(time.time() - start) / 60:.1f} min", tag="sweep")
    return 0


if __name__ == "__main__":
    define_flags()
    sys.exit(app.run(main))
