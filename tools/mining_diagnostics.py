"""How often L_coseg's mined positions have the class they were mined for, per option;
how often the teacher's pseudo-labels are right, per confidence threshold.

    python tools/mining_diagnostics.py --model_dir=RUN_DIR \
        --train_data='data/synthetic/tfrecords/train-*.tfrecord' [--batches=40] \
        [--batch_labeled=3 --batch_unlabeled=3 --crop_size=161] \
        [--tables=mining --tables=pseudo_labels] [--thresholds=0,0.5,0.7,0.9,0.95]

Takes a trained network (a run directory, its last checkpoint), draws training batches
as a coseg step does (the run's labeled images, every training image as unlabeled,
with their hidden labels: synthetic or any labeled records), and mines with the
paper's reading and with each option of `losses.MiningOptions`, on the features of
the training pass (dropout on, as the paper's step) and of an inference pass. For
each it prints the mining precision (the share of mined positions whose hidden class
is the class they were mined for), per class, beside chance (the share that positions
drawn at random inside the target's human region would have). Nothing is trained;
every option sees the same batches and, for the training pass, the same dropout draws.

This is the offline form of the `mining_precision` metric that `--diagnostics` logs
during training (docs/RESULTS.md uses both).

A second table is about the consistency methods (fixmatch, unimatch): the teacher's
pseudo-labels of the unlabeled crops (`consistency_losses.pseudo_labels`, inference
pass), at each of `--thresholds`: the share of the human region's positions that pass
(UniMatch's "mask ratio", the `pseudo_confident` metric of training) and how many of
those have the hidden class (their accuracy); threshold 0 is every position.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tools import experiments  # noqa: E402,F401  (turns oneDNN on: before TensorFlow)

FLAGS = flags.FLAGS

# The options measured, by name: the paper's reading and each option alone.
OPTIONS = {
    "paper": {},
    "prototype": {"point": "prototype"},
    "cosine": {"distance": "cosine"},
    "agreement": {"agreement": True},
    "targets2": {"num_targets": 2},
}


def define_flags():
    flags.DEFINE_string("model_dir", None, "Training run directory (its last checkpoint).")
    flags.DEFINE_string("train_data", None, "Training TFRecords (with part labels).")
    flags.DEFINE_string("labeled_ids_file", None,
                        "Labeled ids (default: the run's labeled_ids.txt).")
    flags.DEFINE_integer("batches", 40, "Training batches drawn.")
    flags.DEFINE_integer("batch_labeled", 3, "Labeled images a batch (B_f).")
    flags.DEFINE_integer("batch_unlabeled", 3, "Unlabeled images a batch (B_u).")
    flags.DEFINE_integer("crop_size", 161, "Training crop.")
    flags.DEFINE_integer("seed", 0, "Seed of the batches and of the dropout draws.")
    flags.DEFINE_multi_enum("tables", ["mining", "pseudo_labels"],
                            ["mining", "pseudo_labels"], "The tables to print.")
    flags.DEFINE_list("thresholds", ["0", "0.5", "0.7", "0.9", "0.95"],
                      "Confidence thresholds of the pseudo-label table.")
    flags.DEFINE_string("output", None, "Also write the tables as JSON here.")
    flags.mark_flags_as_required(["model_dir", "train_data"])


def mining_precision(network, batches, *, num_classes, options, training, seed=0):
    """Mining precision and chance of `options` over `batches` (a list of coseg batches
    whose unlabeled part carries "diagnostic_labels").

    Args:
      network: the functional network (`run_dir.load_network`).
      batches: [{"labeled": {...}, "unlabeled": {...}}] as `streams.train_dataset`.
      num_classes: C.
      options: a `losses.MiningOptions` (its `features` is ignored: `training` says
        which pass the mining reads).
      training: mine on a training pass (dropout on) or an inference pass.
      seed: seed of the dropout draws (the same for every option).

    Returns:
      {"precision": float, "chance": float, "mined": int,
       "per_class": {c: precision or None}} (precision None when nothing was mined).
    """
    import numpy as np
    import tensorflow as tf

    from coseg_tf import losses, masking

    hits = np.zeros(num_classes)
    counts = np.zeros(num_classes)
    chance_sum = 0.0
    tf.random.set_seed(seed)
    for batch in batches:
        lab, unl = batch["labeled"], batch["unlabeled"]
        images = tf.concat([lab["image"], unl["image"]], 0)
        regions = tf.concat([lab["human_region"], unl["human_region"]], 0)
        out = network({"image": images, "human_region": regions}, training=training)
        n_f = tf.shape(lab["image"])[0]
        size = tf.shape(out["logits"])[1:3]
        labels = losses.downsample_labels(labels=lab["labels"], size=size)
        region_u = masking.resize_region(unl["human_region"], size)[..., 0]
        _, aux = losses.coseg_loss(
            logits_labeled=out["logits"][:n_f], labels=labels,
            features_labeled=out["masked_features"][:n_f],
            logits_unlabeled=out["logits"][n_f:],
            features_unlabeled=out["masked_features"][n_f:], region_unlabeled=region_u,
            num_classes=num_classes, options=options)
        hidden = losses.downsample_labels(labels=unl["diagnostic_labels"], size=size)
        hidden = tf.reshape(hidden, [tf.shape(hidden)[0], -1]).numpy()
        region = tf.reshape(region_u, [tf.shape(region_u)[0], -1]).numpy() > 0.5
        mined = aux["mined"].numpy() > 0  # [P, C, h*w]
        for p, t in enumerate(aux["targets"].numpy()):
            for c in range(1, num_classes):
                m = mined[p, c]
                n = int(m.sum())
                if not n:
                    continue
                hits[c] += int((hidden[t][m] == c).sum())
                counts[c] += n
                inside = region[t]
                chance_sum += n * float((hidden[t][inside] == c).mean()) if inside.any() else 0
    total = counts.sum()
    return {"precision": float(hits.sum() / total) if total else None,
            "chance": float(chance_sum / total) if total else None, "mined": int(total),
            "per_class": {c: (float(hits[c] / counts[c]) if counts[c] else None)
                          for c in range(1, num_classes)}}


def pseudo_label_quality(network, batches, *, thresholds):
    """Share of the region passing each threshold and the accuracy of what passes.

    Args:
      network: the functional network (`run_dir.load_network`); its inference pass is
        the teacher, as in `objectives.fixmatch`.
      batches: [{"unlabeled": {"image", "human_region", "diagnostic_labels"}, ...}].
      thresholds: confidence thresholds in [0, 1].

    Returns:
      {threshold: {"share": float, "accuracy": float or None, "positions": int}}:
      `share` of the unlabeled human region's positions (feature grid; positions whose
      hidden label is the ignore label left out) whose confidence is >= threshold,
      `accuracy` the share of those whose pseudo-label is the hidden class (None when
      none passes), `positions` the region's positions counted.
    """
    import numpy as np
    import tensorflow as tf

    from coseg_tf import consistency_losses, losses, masking
    from pipelines import schema

    confidences, right = [], []
    for batch in batches:
        unl = batch["unlabeled"]
        out = network({"image": unl["image"], "human_region": unl["human_region"]},
                      training=False)
        size = tf.shape(out["logits"])[1:3]
        region = masking.resize_region(unl["human_region"], size)[..., 0]
        labels, confidence, _ = consistency_losses.pseudo_labels(
            logits=tf.cast(out["logits"], tf.float32), region=region, threshold=0.0)
        hidden = losses.downsample_labels(labels=unl["diagnostic_labels"], size=size)
        keep = (region.numpy() > 0.5) & (hidden.numpy() != schema.IGNORE_LABEL)
        confidences.append(confidence.numpy()[keep])
        right.append((labels.numpy() == hidden.numpy())[keep])
    confidence = np.concatenate(confidences)
    right = np.concatenate(right)
    result = {}
    for t in thresholds:
        passed = confidence >= float(t)
        result[float(t)] = {
            "share": float(passed.mean()) if passed.size else None,
            "accuracy": float(right[passed].mean()) if passed.any() else None,
            "positions": int(passed.size)}
    return result


def main(argv):
    del argv
    import tensorflow as tf

    from coseg_tf import losses, objectives, run_dir
    from pipelines import streams

    network, info = run_dir.load_network(FLAGS.model_dir, "last")
    ids_file = FLAGS.labeled_ids_file or os.path.join(FLAGS.model_dir, "labeled_ids.txt")
    labeled_ids = open(ids_file).read().split()
    ds = streams.train_dataset(
        FLAGS.train_data, needs=objectives.get("coseg").needs, scheme=info["parts"], labeled_ids=labeled_ids,
        batch_labeled=FLAGS.batch_labeled, batch_unlabeled=FLAGS.batch_unlabeled,
        crop_size=FLAGS.crop_size, min_scale=0.75, max_scale=1.25, diagnostics=True,
        seed=FLAGS.seed)
    batches = [{k: {n: t for n, t in v.items() if n != "id"} for k, v in b.items()}
               for b in ds.take(FLAGS.batches)]
    names = info["class_names"]
    lines = [f"`{FLAGS.model_dir}`, {FLAGS.batches} batches of {FLAGS.batch_labeled} + "
             f"{FLAGS.batch_unlabeled} crops of {FLAGS.crop_size} px"]
    output = {"model_dir": FLAGS.model_dir, "batches": FLAGS.batches, "class_names": names}

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    if "mining" in FLAGS.tables:
        rows = {}
        for name, kw in OPTIONS.items():
            for training in (True, False):
                key = f"{name}, {'training pass (dropout)' if training else 'inference pass'}"
                rows[key] = mining_precision(
                    network, batches, num_classes=info["num_classes"],
                    options=losses.MiningOptions(**kw), training=training, seed=FLAGS.seed)
        lines += ["", "| mining | precision | chance | ÷ chance | "
                  + " | ".join(names[1:]) + " |",
                  "|---|---:|---:|---:|" + "---:|" * (len(names) - 1)]
        for key, r in rows.items():
            ratio = (f"{r['precision'] / r['chance']:.2f}" if r["precision"] is not None
                     and r["chance"] else "-")
            lines.append(f"| {key} | {pct(r['precision'])} | {pct(r['chance'])} | {ratio} | "
                         + " | ".join(pct(r["per_class"][c]) for c in range(1, len(names)))
                         + " |")
        output.update(options={k: dataclasses.asdict(losses.MiningOptions(**v))
                               for k, v in OPTIONS.items()}, rows=rows)
    if "pseudo_labels" in FLAGS.tables:
        quality = pseudo_label_quality(network, batches, thresholds=FLAGS.thresholds)
        lines += ["", "| threshold | share of the region passing | accuracy of those |",
                  "|---:|---:|---:|"]
        lines += [f"| {t:g} | {pct(q['share'])} | {pct(q['accuracy'])} |"
                  for t, q in quality.items()]
        output["pseudo_labels"] = quality
    print("\n".join(lines))
    if FLAGS.output:
        with tf.io.gfile.GFile(FLAGS.output, "w") as f:
            json.dump(output, f, indent=1)
    return 0


if __name__ == "__main__":
    define_flags()
    sys.exit(app.run(main))
