"""Losses of the image-label baselines of the paper's Table 2: GMP and EM-Adapt.

Unlike coseg, these methods read IMAGE-LEVEL labels of the unlabeled images: which
classes appear in each image (`pipelines.streams.image_level_labels`, derived from the
part annotations of the whole image, background always present). The pipeline carries
them only for the methods whose objective needs them (`coseg_tf.objectives.gmp`,
`em_adapt`: `StreamNeeds(image_labels=True)`).

  L_gmp       Global Max Pooling (a multiple-instance baseline): per image and
              foreground class c, the score s_c = max over positions k INSIDE the human
              region of the logit l_c(k); a sigmoid cross entropy of s_c against the
              image-level label y_c, averaged over the foreground classes
              (`gmp_loss`).
  EM-Adapt    (Papandreou et al., ICCV 2015, image-level labels): the E-step turns the
              current log-probabilities into pseudo labels with class-specific adaptive
              biases (`em_adapt_pseudo_labels`), the M-step is a cross entropy on them
              (`em_adapt_loss`).

Both are per-replica means over the unlabeled images that contribute (as every loss in
`coseg_tf.losses`); the trainer divides by the replica count.

Interpretations (the sources leave them open):
1. GMP: background is left out of the multi-label loss: every person box contains
   background, so its image-level label carries no information, and the labeled
   images teach it. The max runs over the human region only (at feature resolution);
   an image with an empty region contributes nothing. The loss of an image is the MEAN
   over the C - 1 foreground classes of the sigmoid cross entropy.
2. EM-Adapt, E-step: Papandreou et al. set the biases so that a share rho_fg of the
   image is assigned to each present foreground class and rho_bg to the background,
   and suppress absent classes. Here the shares are of the HUMAN REGION (our unlabeled
   images come with person boxes; positions outside the region are background, which
   is what the region means): for each present class l, with n positions in the region
   and k_l = max(1, ceil(rho_l * n)), the bias is b_l = -(k_l-th largest log p_l over
   the region), so exactly the top k_l positions of class l have an adjusted score
   f_l + b_l >= 0; absent classes get -inf. A region position takes the class of the
   largest adjusted score. When the top sets of the present classes do not overlap,
   every present class gets at least its share (the E-step test checks this); where
   they overlap, the arg max decides, as the adaptive-bias layer of the original does
   in one pass. Published defaults: rho_fg = 0.20 per present foreground class,
   rho_bg = 0.40.
3. EM-Adapt, M-step: the plain (not class-balanced) cross entropy of the logits
   against the pseudo labels, averaged over ALL positions of the image (outside the
   region the pseudo label is background), then over images. The pseudo labels are
   constants (`tf.stop_gradient`): the gradient is the M-step's only.
"""

from __future__ import annotations

import tensorflow as tf

from coseg_tf.losses import (BACKGROUND, _check_logits, _check_logits_and_region,
                             _check_spatial, _flatten_positions, _mean_over_valid)

# Papandreou et al. (2015), image-level labels: shares of the image given to each
# present foreground class and to the background in the E-step.
DEFAULT_FG_SHARE = 0.20
DEFAULT_BG_SHARE = 0.40
# Weight of the unlabeled images' term in L = L_humanparts + weight * L_(gmp|em_adapt).
DEFAULT_IMAGE_LABEL_WEIGHT = 1.0


def _check_image_labels(image_labels, logits, where):
    """float32 [B, C] {0, 1} image-level labels, C checked against the logits."""
    image_labels = tf.convert_to_tensor(image_labels)
    if image_labels.shape.rank != 2:
        raise ValueError(f"{where}: image_labels must be [B, C], got shape "
                         f"{image_labels.shape}")
    c_labels, c_logits = image_labels.shape[-1], logits.shape[-1]
    if c_labels is not None and c_logits is not None and c_labels != c_logits:
        raise ValueError(f"{where}: image_labels have {c_labels} classes but the logits "
                         f"{c_logits}")
    return tf.cast(tf.cast(image_labels, tf.float32) > 0.5, tf.float32)


# === L_gmp ===
def gmp_loss(*, logits, region, image_labels):
    """Multi-label loss on the global max (inside the human region) of each class score.

    Per image with a non-empty region: 1/(C-1) sum_{c>=1} BCE(sigmoid(s_c), y_c) with
    s_c = max_{k in region} l_c(k); averaged over those images (0 when none).

    Args:
      logits: [B_u, h, w, C] unlabeled logits, class 0 the background.
      region: [B_u, h, w] or [B_u, h, w, 1] human region at feature resolution.
      image_labels: [B_u, C] 1 where class c appears in the image (column 0 unread).

    Returns:
      float32 scalar.
    """
    where = "gmp_loss"
    logits, inside = _check_logits_and_region(logits, region, where)
    labels = _check_image_labels(image_labels, logits, where)
    # [B, h*w, C] logits, [B, h*w, 1] region
    flat = _flatten_positions(logits)
    inside_flat = tf.reshape(inside, [tf.shape(inside)[0], -1, 1])
    # [B] positions in the region
    size = tf.reduce_sum(inside_flat, axis=[1, 2])
    # [B, C] s_c: the max over the region. Outside positions are replaced by the
    # image's lowest logit, so they never win a max they should not take part in; an
    # empty region gives a finite dummy (its image is left out of the mean below).
    floor = tf.reduce_min(flat, axis=[1, 2], keepdims=True)
    scores = tf.reduce_max(tf.where(inside_flat > 0, flat, floor), axis=1)
    # [B, C - 1] foreground classes only (interpretation 1)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels[:, BACKGROUND + 1:],
                                                  logits=scores[:, BACKGROUND + 1:])
    per_image = tf.reduce_mean(bce, axis=1)
    return _mean_over_valid(per_image, size > 0)


# === EM-Adapt ===
def em_adapt_pseudo_labels(*, logits, region, image_labels, fg_share=DEFAULT_FG_SHARE,
                           bg_share=DEFAULT_BG_SHARE):
    """E-step: pseudo labels from adaptive class biases (interpretation 2).

    Args:
      logits: [B_u, h, w, C] unlabeled logits.
      region: [B_u, h, w] or [B_u, h, w, 1] human region at feature resolution.
      image_labels: [B_u, C] 1 where class c appears; the background is always
        treated as present.
      fg_share: share of the region given to each present foreground class.
      bg_share: share of the region given to the background.

    Returns:
      int32 [B_u, h, w] pseudo labels: background outside the region and in images
      with an empty region; inside, one of the present classes. No gradient.
    """
    where = "em_adapt_pseudo_labels"
    for name, share in (("fg_share", fg_share), ("bg_share", bg_share)):
        if not 0.0 < float(share) <= 1.0:
            raise ValueError(f"{where}: {name} must be in (0, 1], got {share}")
    logits, inside = _check_logits_and_region(logits, region, where)
    logits = tf.stop_gradient(logits)
    labels = _check_image_labels(image_labels, logits, where)
    num_classes = tf.shape(logits)[-1]
    # [B, C] present classes, background always
    is_background = tf.one_hot(BACKGROUND, num_classes, dtype=tf.float32)[None, :]
    present = tf.maximum(labels, is_background)
    # [B, h*w, C] log-probabilities, [B, h*w] region
    log_p = _flatten_positions(tf.nn.log_softmax(logits, axis=-1))
    inside_flat = tf.reshape(inside, [tf.shape(inside)[0], -1])
    # [B] n, [B, C] share and k_l = max(1, ceil(share * n)) (at most n)
    n = tf.reduce_sum(inside_flat, axis=1)
    share = is_background * bg_share + (1.0 - is_background) * fg_share
    k = tf.clip_by_value(tf.math.ceil(share * n[:, None]), 1.0, tf.maximum(n[:, None], 1.0))
    # [B, C, h*w] each class's log p over the region, largest first (outside: -inf)
    ranked = tf.sort(tf.where(inside_flat[:, :, None] > 0, log_p, -float("inf")),
                     axis=1, direction="DESCENDING")
    ranked = tf.transpose(ranked, [0, 2, 1])
    # [B, C] the k_l-th largest: b_l = -threshold
    threshold = tf.gather(ranked, tf.cast(k, tf.int32)[..., None] - 1, batch_dims=2)[..., 0]
    # [B, h*w, C] adjusted scores; absent classes can never win (background is present)
    adjusted = tf.where(present[:, None, :] > 0, log_p - threshold[:, None, :],
                        -float("inf"))
    pseudo = tf.argmax(adjusted, axis=-1, output_type=tf.int32)
    pseudo = tf.where(inside_flat > 0, pseudo, BACKGROUND)
    return tf.reshape(pseudo, tf.shape(logits)[:3])


def em_adapt_loss(*, logits, pseudo_labels):
    """M-step: mean cross entropy of the logits against the E-step's pseudo labels.

    Args:
      logits: [B_u, h, w, C] unlabeled logits.
      pseudo_labels: int [B_u, h, w] (`em_adapt_pseudo_labels`).

    Returns:
      float32 scalar: the mean over positions, then over images (0 for no image).
    """
    where = "em_adapt_loss"
    logits = _check_logits(logits, None, where)
    pseudo_labels = tf.stop_gradient(tf.convert_to_tensor(pseudo_labels))
    _check_spatial(logits, pseudo_labels, where, "pseudo_labels")
    # [B, h, w]
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(pseudo_labels, tf.int32), logits=logits)
    per_image = tf.reduce_mean(ce, axis=[1, 2])
    return _mean_over_valid(per_image, tf.ones_like(per_image))
