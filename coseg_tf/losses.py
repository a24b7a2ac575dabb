"""The three losses of the cosegmentation method (DESIGN.md §3; Shimoda & Yanai, §2).

A replica's batch holds B_f labeled images (logits, part labels z^f, masked features
m^f) and B_u unlabeled images (logits, masked features m^u, human region y^u). With
p = softmax(logits), everything at feature resolution h x w:

  L_humanparts  class-balanced cross entropy on the labeled images
                (`humanparts_loss`);
  L_human       -log(1 - p_0) inside the unlabeled images' own human regions
                (`human_loss`);
  L_coseg       each labeled image picks its most similar unlabeled image (the
                target), takes one feature vector r_c per part class at its most
                confident labeled pixel, mines the target positions nearest to r_c
                inside the target's human region, and trains them as class c
                (`choose_targets`, `class_points`, `mine_positions`, `coseg_loss`).

L_all = L_humanparts + alpha L_human + beta L_coseg is summed in one place, the coseg
objective that training runs (`coseg_tf.objectives.coseg`).

Labels reach these functions at feature resolution: `downsample_labels` samples them
on the network's stride-8 grid (nearest). Human regions reach them at feature
resolution too (`coseg_tf.masking.resize_region`, the same resize the masking layer
applies); this module does not resize regions itself.

Every function is pure TensorFlow, vectorized over images and classes (no Python loop
over either), and runs eagerly or inside `tf.function` with unknown batch sizes. The
discrete steps (target choice, class points, mining) run under `tf.stop_gradient`:
the only gradient of L_coseg is the one of log p^t at the mined positions.

Scaling across replicas: every loss here is a MEAN over this replica's images (and is
0 when no image of the replica contributes). Under `MirroredStrategy` the trainer
divides it by `num_replicas_in_sync` before taking gradients, because the replicas'
gradients are summed; nothing here divides by the replica count.

Empty cases contribute zero, never NaN or Inf, in values and gradients: a class absent
from an image, a class whose mined set is empty, an empty human region, an image whose
pixels are all `ignore_label`, a batch without any labeled pixel. Means use
`count / max(count, 1)`-style normalizers, so an empty sum divides by 1.

Departures and interpretations
------------------------------
1. Target choice: the paper writes t(i) = arg max_j D(g_i^f, g_j^u) but calls x^t the
   most similar image; DESIGN takes the most similar, i.e. arg min of the Euclidean
   distance. g = GAP(m) is the mean over ALL h x w positions, including the zeros the
   masking layer wrote outside the human region (not a mean over the region).
2. Ranking by squared distance: d_c and the GAP distance are compared through their
   squares (the same order as the distances; no sqrt is needed). The mining
   distances use ||r||^2 - 2 r.m + ||m||^2 (clamped at 0) so no [B_f, C, h*w, F]
   tensor is built; orders may differ from exact arithmetic only between positions
   whose distances agree to float32 rounding.
3. |S_c| = floor(min(n_c, R_t) / 2), where n_c is the number of pixels labeled c in
   z_i^f AT FEATURE RESOLUTION (after `downsample_labels`) and R_t is the number of
   positions in the target's human region: DESIGN caps n_c by the region's size, then
   halves it. (The other reading, min(floor(n_c / 2), R_t), would let every class
   claim the whole region of a small target.) The paper's normalizer 1/(n_c/2) becomes
   1/|S_c|, which differs only when the cap applies or n_c is odd.
4. C_i (the classes averaged over in L_coseg) are the classes c != background with a
   NON-EMPTY S_c; a present class with |S_c| = 0 (n_c = 1, or a target region of 0 or
   1 position) contributes nothing and is not counted. L_coseg is averaged over the
   labeled images with a non-empty C_i; the others contribute nothing.
5. Class points: (a_c, b_c) = arg max of the softmax probability p_c^f (not the logit)
   over the pixels labeled c (ignored pixels never count). Ties, in this arg max, in
   the arg min of the target choice and in the mining order, go to the lowest index
   (row-major flat position, or lowest unlabeled image index); mining uses a stable
   sort, so this is deterministic.
6. Mining considers only positions inside the target's human region (region > 0.5);
   positions outside it are at distance +inf and are never mined, whatever their
   features.
7. No gradient flows through the discrete steps (DESIGN): not into m^f or m^u through
   the GAP or the distances, not into the labeled logits through the class points.
   The paper writes d_c(a, b; theta) but does not say how to differentiate an
   arg max / sort; we follow DESIGN.
8. L_human: the paper's indices mix f and t (y_1^f, p_0^t); DESIGN applies it to every
   unlabeled image inside its own human region. log(1 - p_0) is computed as
   logsumexp(logits[..., 1:]) - logsumexp(logits), never as log of 1 - softmax.
9. Per-image normalization: every loss is computed per image with the paper's
   per-image normalizers (1/|C|, 1/|z_c|, 1/|y|, 1/|S_c|) and then averaged over the
   images that contribute (labeled images with a labeled pixel; unlabeled images with
   a non-empty region; labeled images with a non-empty C_i), not pooled over pixels.
10. Labels are downsampled by sampling input pixel stride * k for output cell k (the
   centre of the receptive field of a padded stride-2 pooling cascade), not by an
   align-corners or half-pixel nearest resize.
11. The S_c of different classes are mined independently and may overlap: a target
   position near two class points is trained towards both classes (the paper does
   not exclude this). Several labeled images may share a target; each contributes
   its own term. Every foreground class is mined, "other human region" included.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from pipelines.schema import IGNORE_LABEL

# Output stride of DeepLab-LargeFOV (DESIGN §2): 321 x 321 inputs give 41 x 41 logits.
OUTPUT_STRIDE = 8
# Class 0 is the background in every merge scheme (pipelines/schema.py).
BACKGROUND = 0
DEFAULT_ALPHA = 0.001
DEFAULT_BETA = 0.001

# Mining options (`MiningOptions`): the paper's reading first.
MINING_POINTS = ("argmax", "prototype")
MINING_DISTANCES = ("euclidean", "cosine")
MINING_FEATURES = ("train", "inference")


@dataclasses.dataclass(frozen=True)
class MiningOptions:
    """How L_coseg mines its target positions: the paper's reading and options beside it.

    The defaults are the paper's mining (Shimoda & Yanai §2.2, DESIGN §3); every other
    value is an option measured beside it (docs/RESULTS.md), never a silent change.

    Args:
      point: "argmax" (the paper: r_c = m^f at the most confident pixel labeled c) or
        "prototype" (r_c = the mean of m^f over the pixels labeled c).
      distance: "euclidean" (the paper: ||r_c - m^t(k)||) or "cosine"
        (1 - cos(r_c, m^t(k)); a zero feature vector has cosine 0 with everything).
      agreement: keep only the mined positions whose current prediction (arg max of
        p^t, from the pass the mining reads) is the class they were mined for;
        |S_c| is then the count kept.
      num_targets: each labeled image mines in its `num_targets` most similar unlabeled
        images (the paper: 1), each (labeled image, target) pair contributing one term;
        capped at the unlabeled batch size.
      features: "train" (the paper: the features of the training pass, dropout on) or
        "inference" (a second pass of the network in inference mode, no dropout, no
        gradient, gives the features, class points and agreement; the gradient still
        flows through the training pass's log p^t). Read by `CosegTrainer`, which
        runs that pass; the functions here take whatever features they are given.
    """

    point: str = "argmax"
    distance: str = "euclidean"
    agreement: bool = False
    num_targets: int = 1
    features: str = "train"

    def __post_init__(self):
        for name, allowed in (("point", MINING_POINTS), ("distance", MINING_DISTANCES),
                              ("features", MINING_FEATURES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"MiningOptions: {name}={getattr(self, name)!r} is not one "
                                 f"of {', '.join(allowed)}")
        if isinstance(self.num_targets, bool) or not isinstance(self.num_targets, int) \
                or self.num_targets < 1:
            raise ValueError(f"MiningOptions: num_targets must be an int >= 1, got "
                             f"{self.num_targets!r}")

    @property
    def is_paper(self):
        """Whether these are the paper's mining (the defaults)."""
        return self == MiningOptions()


PAPER_MINING = MiningOptions()


# === Labels at feature resolution ===
def downsample_labels(labels, size, *, stride=OUTPUT_STRIDE):
    """Nearest sampling of label maps on the network's output grid.

    Output cell (k, l) takes the input pixel (stride * k, stride * l): the centre of
    its receptive field in a cascade of 3x3, stride-2, padding-1 poolings. For a 321 x
    321 crop and 41 x 41 logits this is exactly `labels[:, ::8, ::8]`. Labels are never
    interpolated, so no class id is invented at part boundaries and `ignore_label`
    pixels stay ignored.

    Args:
      labels: integer labels, [B, H, W] or [B, H, W, 1].
      size: (h, w), Python ints or an int32 tensor (e.g. `tf.shape(logits)[1:3]`).
      stride: the network's output stride; requires stride * (h - 1) <= H - 1 and
        stride * (w - 1) <= W - 1 (the network gives h = ceil(H / stride)).

    Returns:
      int32 [B, h, w].
    """
    labels = _without_channel(labels, "labels", "downsample_labels")
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"downsample_labels: stride must be >= 1, got {stride}")

    static_size = tf.get_static_value(size)
    size = tf.cast(tf.convert_to_tensor(size), tf.int32)
    # [B, ceil(H / stride), ceil(W / stride)]
    sampled = labels[:, ::stride, ::stride]
    have = sampled.shape[1:3]
    if static_size is not None and None not in have:
        if have[0] < static_size[0] or have[1] < static_size[1]:
            raise ValueError(
                f"downsample_labels: labels of spatial size {labels.shape[1:3]} give only "
                f"{tuple(have)} cells at stride {stride}, fewer than the requested size "
                f"{tuple(static_size)}")
    check = tf.debugging.assert_greater_equal(
        tf.shape(sampled)[1:3], size,
        message=f"downsample_labels: labels too small for the requested size at stride "
                f"{stride}")
    with tf.control_dependencies([check]):
        # [B, h, w]
        out = tf.cast(sampled[:, :size[0], :size[1]], tf.int32)
    if static_size is not None:
        out = tf.ensure_shape(out, [None, int(static_size[0]), int(static_size[1])])
    return out


# === Shared helpers ===
def _without_channel(t, name, where):
    """[B, H, W] from [B, H, W] or [B, H, W, 1]; a ValueError naming `name` otherwise."""
    t = tf.convert_to_tensor(t)
    if t.shape.rank == 4 and t.shape[-1] in (None, 1):
        return t[..., 0]
    if t.shape.rank != 3:
        raise ValueError(f"{where}: {name} must be [B, H, W] or [B, H, W, 1], "
                         f"got shape {t.shape}")
    return t


def _check_logits(logits, num_classes, where, name="logits"):
    """float32 [B, h, w, C], with C checked against num_classes when static."""
    logits = tf.convert_to_tensor(logits)
    if logits.shape.rank != 4:
        raise ValueError(f"{where}: {name} must be [B, h, w, C], got shape {logits.shape}")
    channels = logits.shape[-1]
    if num_classes is not None and channels is not None and channels != num_classes:
        raise ValueError(f"{where}: {name} have {channels} channels but "
                         f"num_classes={num_classes}")
    return tf.cast(logits, tf.float32)


def _check_features(features, where, name):
    features = tf.convert_to_tensor(features)
    if features.shape.rank != 4:
        raise ValueError(f"{where}: {name} must be [B, h, w, F], got shape {features.shape}")
    return tf.cast(features, tf.float32)


def _check_spatial(reference, other, where, name):
    """Raises when the static h, w of `other` and `reference` disagree."""
    a, b = reference.shape[1:3], other.shape[1:3]
    for x, y in zip(a, b):
        if x is not None and y is not None and x != y:
            raise ValueError(f"{where}: {name} has spatial size {tuple(b)}, expected "
                             f"{tuple(a)} (feature resolution)")


def _flatten_positions(x):
    """[B, h, w, ...] -> [B, h * w, ...], keeping the static trailing dims."""
    trailing = [d if d is not None else tf.shape(x)[3 + i]
                for i, d in enumerate(x.shape[3:])]
    return tf.reshape(x, [tf.shape(x)[0], -1] + trailing)


def _label_one_hot(labels, *, num_classes, ignore_label, where):
    """float32 [B, h*w, C]: 1 where a pixel is labeled c; all zeros on ignored pixels.

    Labels outside [0, num_classes) other than ignore_label are an error.
    """
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank != 3:
        raise ValueError(f"{where}: labels must be [B, h, w] (feature resolution, see "
                         f"downsample_labels), got shape {labels.shape}")
    # [B, h*w]
    flat = tf.reshape(tf.cast(labels, tf.int32), [tf.shape(labels)[0], -1])
    # [B, h*w] pixels that some loss reads
    valid = tf.not_equal(flat, ignore_label)
    in_range = tf.logical_and(flat >= 0, flat < num_classes)
    check = tf.debugging.assert_equal(
        tf.reduce_all(tf.logical_or(in_range, tf.logical_not(valid))), True,
        message=f"{where}: labels must lie in [0, {num_classes}) or equal "
                f"ignore_label={ignore_label}")
    with tf.control_dependencies([check]):
        # [B, h*w, C]; one_hot of -1 is all zeros
        return tf.one_hot(tf.where(valid, flat, -1), num_classes, dtype=tf.float32)


def _region_mask(region, where):
    """float32 {0, 1} [B, h, w] from a region [B, h, w] or [B, h, w, 1] (> 0.5 = in)."""
    region = _without_channel(region, "region", where)
    return tf.cast(tf.cast(region, tf.float32) > 0.5, tf.float32)


def _check_logits_and_region(logits, region, where):
    """float32 logits [B, h, w, C] (C >= 2, class 0 the background) and the {0, 1}
    region mask [B, h, w] of the same spatial size."""
    logits = _check_logits(logits, None, where)
    if logits.shape[-1] is not None and logits.shape[-1] < 2:
        raise ValueError(f"{where}: logits need a background and at least one other "
                         f"class, got {logits.shape[-1]} channel(s)")
    inside = _region_mask(region, where)
    _check_spatial(logits, inside, where, "region")
    return logits, inside


def _mean_over_valid(values, valid):
    """Mean of `values` [B] over the entries where `valid` [B] holds; 0 when none."""
    valid = tf.cast(valid, tf.float32)
    total = tf.reduce_sum(tf.where(valid > 0, values, 0.0))
    return total / tf.maximum(tf.reduce_sum(valid), 1.0)


# === L_humanparts ===
def humanparts_loss(*, logits, labels, num_classes, ignore_label=IGNORE_LABEL):
    """Class-balanced cross entropy on labeled images (background included).

    Per image: -1/|C| sum_{c in C} 1/|z_c| sum_{k in z_c} log p_c(k), with C the
    classes present among the non-ignored pixels; averaged over the images that have
    at least one labeled pixel (0 when none has).

    Args:
      logits: [B_f, h, w, C] labeled logits.
      labels: int [B_f, h, w] labels at feature resolution; `ignore_label` allowed.
      num_classes: C.
      ignore_label: label value no loss reads.

    Returns:
      float32 scalar.
    """
    where = "humanparts_loss"
    logits = _check_logits(logits, num_classes, where)
    _check_spatial(logits, tf.convert_to_tensor(labels), where, "labels")
    # [B, h*w, C]
    log_p = _flatten_positions(tf.nn.log_softmax(logits, axis=-1))
    # [B, h*w, C]
    one_hot = _label_one_hot(labels, num_classes=num_classes, ignore_label=ignore_label,
                             where=where)
    # [B, C] |z_c|
    count = tf.reduce_sum(one_hot, axis=1)
    # [B, C] mean of log p_c over z_c (0 for an absent class)
    class_mean = tf.reduce_sum(one_hot * log_p, axis=1) / tf.maximum(count, 1.0)
    # [B, C]
    present = tf.cast(count > 0, tf.float32)
    # [B] |C|
    num_present = tf.reduce_sum(present, axis=1)
    # [B]
    per_image = -tf.reduce_sum(present * class_mean, axis=1) / tf.maximum(num_present, 1.0)
    return _mean_over_valid(per_image, num_present > 0)


# === L_human ===
def human_loss(*, logits, region):
    """-log(1 - p_0) inside each unlabeled image's own human region.

    Per image: -1/|y| sum_{k in y} log(1 - p_0(k)); averaged over the images with a
    non-empty region (0 when none has one).

    Args:
      logits: [B_u, h, w, C] unlabeled logits, C >= 2, class 0 the background.
      region: [B_u, h, w] or [B_u, h, w, 1] human region at feature resolution,
        {0, 1} (values > 0.5 count as inside).

    Returns:
      float32 scalar.
    """
    where = "human_loss"
    # [B, h, w, C], [B, h, w]
    logits, inside = _check_logits_and_region(logits, region, where)
    # [B, h, w] log(1 - p_0) = log sum_{c>=1} exp(l_c) - log sum_c exp(l_c)
    log_not_background = (tf.reduce_logsumexp(logits[..., 1:], axis=-1)
                          - tf.reduce_logsumexp(logits, axis=-1))
    # [B] |y|
    size = tf.reduce_sum(inside, axis=[1, 2])
    # [B]
    per_image = -tf.reduce_sum(inside * log_not_background, axis=[1, 2]) / tf.maximum(size, 1.0)
    return _mean_over_valid(per_image, size > 0)


# === L_coseg: the discrete steps ===
def choose_targets(*, features_labeled, features_unlabeled):
    """Index of the most similar unlabeled image for each labeled image.

    g = GAP(m), the mean over all h x w positions; t(i) = arg min_j ||g_i^f - g_j^u||
    (ties: the lowest j). No gradient.

    Args:
      features_labeled: [B_f, h, w, F] masked features m^f.
      features_unlabeled: [B_u, h, w, F] masked features m^u, B_u >= 1.

    Returns:
      int32 [B_f] indices into the unlabeled batch.
    """
    where = "choose_targets"
    feats_f = tf.stop_gradient(_check_features(features_labeled, where, "features_labeled"))
    feats_u = tf.stop_gradient(_check_features(features_unlabeled, where,
                                               "features_unlabeled"))
    return _nearest_unlabeled(feats_f, feats_u, 1, where)[:, 0]


def _class_points(probs, labels, num_classes, ignore_label, where):
    """(flat index [B, C] int32, present [B, C] bool, n_c [B, C] float32)."""
    # [B, h*w, C]
    probs = _flatten_positions(tf.stop_gradient(tf.cast(probs, tf.float32)))
    # [B, h*w, C]
    one_hot = _label_one_hot(labels, num_classes=num_classes, ignore_label=ignore_label,
                             where=where)
    # [B, h*w, C] p_c on pixels labeled c, -1 elsewhere (probabilities are >= 0)
    scores = tf.where(one_hot > 0, probs, -1.0)
    # [B, C] flat position of the most confident pixel of each class
    index = tf.argmax(scores, axis=1, output_type=tf.int32)
    # [B, C] n_c
    count = tf.reduce_sum(one_hot, axis=1)
    # [C] True except for the background
    foreground = tf.not_equal(tf.range(num_classes), BACKGROUND)
    # [B, C]
    present = tf.logical_and(count > 0, foreground[None, :])
    return index, present, count


def class_points(*, probs_labeled, labels, num_classes, ignore_label=IGNORE_LABEL):
    """Most confident labeled pixel of each foreground class present in each image.

    (a_c, b_c) = arg max of p_c^f over the pixels labeled c (ties: the lowest flat
    position). No gradient.

    Args:
      probs_labeled: [B_f, h, w, C] softmax probabilities of the labeled images.
      labels: int [B_f, h, w] labels at feature resolution; `ignore_label` allowed.
      num_classes: C.
      ignore_label: label value never read.

    Returns:
      index: int32 [B_f, C], the row-major flat position a_c * w + b_c (meaningless
        where not present).
      present: bool [B_f, C], c != background and some pixel is labeled c.
    """
    where = "class_points"
    probs = _check_logits(probs_labeled, num_classes, where, "probs_labeled")
    _check_spatial(probs, tf.convert_to_tensor(labels), where, "labels")
    index, present, _ = _class_points(probs, labels, num_classes, ignore_label, where)
    return index, present


def _nearest_unlabeled(feats_f, feats_u, num_targets, where):
    """int32 [B_f, K]: for each labeled image, its K = min(num_targets, B_u) most similar
    unlabeled images by ||GAP(m^f) - GAP(m^u)||, nearest first (ties: lowest index)."""
    # [B_f, F] g^f, [B_u, F] g^u
    g_f = tf.reduce_mean(feats_f, axis=[1, 2])
    g_u = tf.reduce_mean(feats_u, axis=[1, 2])
    # [B_f, B_u] squared Euclidean distances (same order as the distances)
    dist = tf.reduce_sum(tf.square(g_f[:, None, :] - g_u[None, :, :]), axis=-1)
    num_unlabeled = tf.shape(feats_u)[0]
    check = tf.debugging.assert_positive(
        num_unlabeled,
        message=f"{where}: features_unlabeled holds no image; the coseg loss needs "
                f"B_u >= 1 unlabeled images per replica")
    with tf.control_dependencies([check]):
        if num_targets == 1:
            return tf.argmin(dist, axis=1, output_type=tf.int32)[:, None]
        # top_k of -dist: the smallest distances, lower index first among equals.
        k = tf.minimum(num_targets, num_unlabeled)
        return tf.math.top_k(-dist, k=k, sorted=True).indices


def _mine(*, probs, labels, feats_f, feats_u, region, num_classes, ignore_label, where,
          options=PAPER_MINING, logits_u=None):
    """Target choice, class points and mining over (labeled image, target) pairs.

    Returns (mined [P, C, h*w] float32, targets [P] int32, points [P, C] int32,
    sources [P] int32), P = B_f * K pairs, pair p = (labeled image sources[p], target
    targets[p]), the K targets of a labeled image in consecutive rows, nearest first.
    """
    feats_f = tf.stop_gradient(_check_features(feats_f, where, "features_labeled"))
    feats_u = tf.stop_gradient(_check_features(feats_u, where, "features_unlabeled"))
    region = _region_mask(region, where)
    for name, t in (("labels", tf.convert_to_tensor(labels)), ("features_labeled", feats_f),
                    ("features_unlabeled", feats_u), ("region_unlabeled", region)):
        _check_spatial(probs, t, where, name)

    # [B_f, K] the targets of each labeled image
    nearest = _nearest_unlabeled(feats_f, feats_u, options.num_targets, where)
    k_targets = tf.shape(nearest)[1]
    # [P] pairs, labeled-image-major
    targets = tf.reshape(nearest, [-1])
    sources = tf.repeat(tf.range(tf.shape(nearest)[0], dtype=tf.int32), k_targets)
    # [B_f, C], [B_f, C], [B_f, C]
    points, present, n_c = _class_points(probs, labels, num_classes, ignore_label, where)

    # [B_f, h*w, F]
    flat_f = _flatten_positions(feats_f)
    if options.point == "prototype":
        # [B_f, h*w, C]
        one_hot = _label_one_hot(labels, num_classes=num_classes, ignore_label=ignore_label,
                                 where=where)
        # [B_f, C, F] r_c = mean of m^f over the pixels labeled c (0 for absent classes)
        r = tf.matmul(one_hot, flat_f, transpose_a=True) / tf.maximum(n_c, 1.0)[..., None]
    else:
        # [B_f, C, F] r_c = m^f at the class points
        r = tf.gather(flat_f, points, batch_dims=1)
    # [P, C, F], [P, C], [P, C], [P, C]
    r, points, present, n_c = (tf.gather(t, sources) for t in (r, points, present, n_c))
    # [P, h*w, F] the target's masked features m^t
    m_t = tf.gather(_flatten_positions(feats_u), targets)
    # [P, h*w] the target's human region
    region_t = tf.gather(tf.reshape(region, [tf.shape(region)[0], -1]), targets) > 0.5

    if options.distance == "cosine":
        # ||r/|r| - m/|m|||^2 = 2 - 2 cos: the same order as 1 - cos
        r = tf.math.l2_normalize(r, axis=-1)
        m_t = tf.math.l2_normalize(m_t, axis=-1)
    # [P, C, h*w] d_c(k)^2 = ||r_c||^2 - 2 r_c . m_t(k) + ||m_t(k)||^2
    sq_dist = (tf.reduce_sum(tf.square(r), axis=-1)[:, :, None]
               - 2.0 * tf.matmul(r, m_t, transpose_b=True)
               + tf.reduce_sum(tf.square(m_t), axis=-1)[:, None, :])
    sq_dist = tf.maximum(sq_dist, 0.0)
    # [P, C, h*w] +inf outside the target's region: never among the nearest
    sq_dist = tf.where(region_t[:, None, :], sq_dist, float("inf"))
    # [P, C, h*w] rank of each position by distance (0 = nearest; stable: ties go to
    # the lowest position). argsort of a permutation is its inverse.
    order = tf.argsort(sq_dist, axis=-1, stable=True)
    rank = tf.argsort(order, axis=-1, stable=True)

    # [P, 1] R_t, the size of the target's region
    region_size = tf.reduce_sum(tf.cast(region_t, tf.float32), axis=-1, keepdims=True)
    # [P, C] |S_c| = floor(min(n_c, R_t) / 2); 0 for the background and absent classes
    k = tf.cast(tf.math.floordiv(tf.minimum(n_c, region_size), 2.0), tf.int32)
    k = tf.where(present, k, 0)
    # [P, C, h*w]
    mined = tf.logical_and(rank < k[:, :, None], region_t[:, None, :])
    if options.agreement:
        if logits_u is None:
            raise ValueError(f"{where}: MiningOptions(agreement=True) needs the unlabeled "
                             "logits of the mining pass")
        # [B_u, h*w] the current prediction of each unlabeled position
        pred_u = tf.argmax(_flatten_positions(tf.stop_gradient(logits_u)), axis=-1,
                           output_type=tf.int32)
        # [P, h*w] of each pair's target
        pred_t = tf.gather(pred_u, targets)
        agrees = tf.equal(pred_t[:, None, :], tf.range(num_classes)[None, :, None])
        mined = tf.logical_and(mined, agrees)
    return tf.cast(mined, tf.float32), targets, points, sources


def mine_positions(*, probs_labeled, labels, features_labeled, features_unlabeled,
                   region_unlabeled, num_classes, ignore_label=IGNORE_LABEL,
                   options=PAPER_MINING, logits_unlabeled=None):
    """Target choice, class points and mining: the positions S_c of L_coseg.

    For labeled image i with target t = t(i) and each foreground class c present in
    z_i^f: r_c = m_i^f(a_c, b_c); d_c(k) = ||r_c - m_t(k)|| over the positions k inside
    y_t; S_c = the floor(min(n_c, R_t) / 2) positions of smallest d_c, with n_c the
    pixels labeled c and R_t the size of y_t (ties: the lowest flat position). No
    gradient.

    Args:
      probs_labeled: [B_f, h, w, C] softmax probabilities of the labeled images.
      labels: int [B_f, h, w] labels at feature resolution; `ignore_label` allowed.
      features_labeled: [B_f, h, w, F] masked features m^f.
      features_unlabeled: [B_u, h, w, F] masked features m^u, B_u >= 1.
      region_unlabeled: [B_u, h, w] or [B_u, h, w, 1] human regions y^u at feature
        resolution, {0, 1}.
      num_classes: C.
      ignore_label: label value never read.
      options: `MiningOptions` (default: the paper's mining).
      logits_unlabeled: [B_u, h, w, C], read only with options.agreement.

    Returns:
      mined: float32 [P, C, h*w], 1 on the positions of S_c in the target (row-major
        flat positions); all zeros for the background and absent classes. P = B_f
        (the paper) or B_f * K with options.num_targets = K: the K (labeled image,
        target) pairs of labeled image i in rows i*K .. i*K + K - 1, nearest first.
      targets: int32 [P], t(i) of each pair.
    """
    where = "mine_positions"
    probs = tf.stop_gradient(_check_logits(probs_labeled, num_classes, where,
                                           "probs_labeled"))
    mined, targets, _, _ = _mine(probs=probs, labels=labels, feats_f=features_labeled,
                                 feats_u=features_unlabeled, region=region_unlabeled,
                                 num_classes=num_classes, ignore_label=ignore_label,
                                 where=where, options=options, logits_u=logits_unlabeled)
    return mined, targets


# === L_coseg ===
def coseg_loss(*, logits_labeled, labels, features_labeled, logits_unlabeled,
               features_unlabeled, region_unlabeled, num_classes,
               ignore_label=IGNORE_LABEL, options=PAPER_MINING,
               mining_logits_unlabeled=None, valid_unlabeled=None):
    """The cosegmentation loss: mined target positions trained as their class.

    Per labeled image i with target t: -1/|C_i| sum_{c in C_i} 1/|S_c|
    sum_{k in S_c} log p_c^t(k), with C_i the foreground classes whose S_c is not empty;
    averaged over the labeled images with a non-empty C_i (0 when there is none). The
    gradient flows only through log p^t at the mined positions. With
    options.num_targets = K > 1 every (labeled image, target) pair is such a term and
    the mean runs over the pairs with a non-empty C.

    Args:
      logits_labeled: [B_f, h, w, C] labeled logits (read only by the class points).
      labels: int [B_f, h, w] labels at feature resolution; `ignore_label` allowed.
      features_labeled: [B_f, h, w, F] masked features m^f (read only by the mining).
      logits_unlabeled: [B_u, h, w, C] unlabeled logits: the gradient flows through
        their log-softmax at the mined positions.
      features_unlabeled: [B_u, h, w, F] masked features m^u, B_u >= 1 (read only by
        the mining).
      region_unlabeled: [B_u, h, w] or [B_u, h, w, 1] human regions y^u at feature
        resolution, {0, 1}.
      num_classes: C.
      ignore_label: label value never read.
      options: `MiningOptions` (default: the paper's mining).
      mining_logits_unlabeled: [B_u, h, w, C] logits of the pass the mining reads, for
        options.agreement (default: `logits_unlabeled`). With
        options.features == "inference" the caller passes the inference pass's
        labeled logits, features and these; the gradient still flows through
        `logits_unlabeled` only.
      valid_unlabeled: [B_u, h, w] or None: where `logits_unlabeled` show the target's
        own position (> 0.5). Mined positions elsewhere are dropped after the mining,
        as `agreement` drops them, and |S_c| is the count kept. For logits of another
        view than the features were mined on (coseg_fixmatch: mined on the weak view,
        trained on the strong view, whose CutMix box shows another image). None: all.

    Returns:
      loss: float32 scalar.
      aux: {"targets": int32 [P], "mined": float32 [P, C, h*w] (row-major flat
        positions of the target), "num_mined": int32 [P, C] |S_c|,
        "points": int32 [P, C] flat class points (valid where num_mined > 0),
        "sources": int32 [P] the labeled image of each pair}, P = B_f * K pairs
        (P = B_f for the paper's one target), for the mining-precision metric.

    Raises:
      ValueError: shapes that disagree, or agreement without logits to read.
    """
    where = "coseg_loss"
    logits_f = _check_logits(logits_labeled, num_classes, where)
    logits_u = _check_logits(logits_unlabeled, num_classes, where)
    _check_spatial(logits_f, logits_u, where, "logits_unlabeled")
    if mining_logits_unlabeled is None:
        mining_logits_unlabeled = logits_u
    else:
        mining_logits_unlabeled = _check_logits(mining_logits_unlabeled, num_classes, where,
                                                "mining_logits_unlabeled")
        _check_spatial(logits_u, mining_logits_unlabeled, where, "mining_logits_unlabeled")
    # [B_f, h, w, C] p^f, only for the class points
    probs_f = tf.nn.softmax(tf.stop_gradient(logits_f), axis=-1)
    # [P, C, h*w], [P], [P, C], [P]: discrete, no gradient
    mined, targets, points, sources = _mine(
        probs=probs_f, labels=labels, feats_f=features_labeled, feats_u=features_unlabeled,
        region=region_unlabeled, num_classes=num_classes, ignore_label=ignore_label,
        where=where, options=options, logits_u=mining_logits_unlabeled)
    if valid_unlabeled is not None:
        valid = _region_mask(valid_unlabeled, where)
        _check_spatial(logits_u, valid, where, "valid_unlabeled")
        # [P, 1, h*w] the positions of each pair's target that its logits show
        mined = mined * tf.gather(tf.reshape(valid, [tf.shape(valid)[0], -1]),
                                  targets)[:, None, :]
    mined = tf.stop_gradient(mined)

    # [B_u, h*w, C] log p^u
    log_p_u = _flatten_positions(tf.nn.log_softmax(logits_u, axis=-1))
    # [P, C, h*w] log p_c^t(k), the target of each pair
    log_p_t = tf.transpose(tf.gather(log_p_u, targets), [0, 2, 1])
    # [P, C] |S_c|
    num_mined = tf.reduce_sum(mined, axis=-1)
    # [P, C] mean of log p_c^t over S_c (0 where S_c is empty)
    class_mean = tf.reduce_sum(mined * log_p_t, axis=-1) / tf.maximum(num_mined, 1.0)
    # [P, C] c in C_i
    in_c = tf.cast(num_mined > 0, tf.float32)
    # [P] |C_i|
    num_valid = tf.reduce_sum(in_c, axis=-1)
    # [P]
    per_pair = -tf.reduce_sum(in_c * class_mean, axis=-1) / tf.maximum(num_valid, 1.0)
    loss = _mean_over_valid(per_pair, num_valid > 0)
    aux = {"targets": targets, "mined": mined,
           "num_mined": tf.cast(num_mined, tf.int32), "points": points, "sources": sources}
    return loss, aux
