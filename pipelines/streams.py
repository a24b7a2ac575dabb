"""The tf.data streams of coseg_tf: labeled, unlabeled, train (both zipped) and eval.

Every stream reads the one TFRecord format (`pipelines/schema.py`) and builds its
elements from `decode.decode_example`, `merge` and `augment`:

  labeled_dataset    the labeled subset (filtered by id), augmented, batched:
                     {"image" float32 [B, c, c, 3] RGB 0..255,
                      "human_region" float32 [B, c, c, 1], "labels" int32 [B, c, c]
                      (255 = ignore), "id" string [B]}
  unlabeled_dataset  ALL training images (or the records of --unlabeled_data, e.g.
                     box-only records), augmented, batched, without part labels:
                     {"image", "human_region", "id"}; with diagnostics=True also
                     "diagnostic_labels" int32 [B, c, c] (the hidden merged labels,
                     for the mining-precision metric only; no loss reads it); with
                     image_labels=True also "image_labels" float32 [B, C] (the classes
                     present in the whole image; for the image-label methods only);
                     with strong_views=1 or 2 also "strong_image" float32 [B, c, c, 3]
                     and "cutmix_box" float32 [B, c, c] (then "strong_image_2",
                     "cutmix_box_2"): strong views of the same crop (`STRONG_VIEW_KEYS`)
  train_dataset      {"labeled": ..., "unlabeled": ...} zipped per step, the unlabeled
                     stream as a method's `StreamNeeds` ask (only {"labeled": ...}
                     when it needs none)
  eval_dataset       whole images, batch 1, no augmentation:
                     {"image" float32 [1, H, W, 3], "human_region" [1, H, W, 1],
                      "labels" int32 [1, H, W], "id" string [1]}

Batch sizes are GLOBAL (per-replica size x number of replicas): the caller multiplies,
and `strategy.experimental_distribute_dataset` splits each batch across replicas.

Randomness. A stream is a function of its arguments alone: the same for the same seed,
run after run, whatever the map's parallelism, the global seed (`tf.random.set_seed`,
`keras.utils.set_random_seed`) or what ran before in the process. Epoch e (one pass
over the records) is ordered by seeds derived from (seed, stream, e) with stateless
ops, so each epoch is ordered differently; every element's augmentation seeds are
derived from (seed, stream, element index across epochs). `Dataset.shuffle(seed=...)`
is not used: it mixes the global seed (or a default when none is set) into its seed
(`tf.data` `random_seed.get_seed`), so its order changed with the global state;
`_shuffle` runs the same shuffle kernel with explicit seeds.

Position. Since element i depends on (seed, i) alone, a stream can start at any
element (`start`, `start_batch`): a resumed run reads exactly the elements the run
would have read had it never stopped, skipping whole epochs by number and the rest of
the current epoch as serialized records, without decoding them.

Decoding cost. Records are shuffled serialized (a JPEG is ~10x smaller than its pixels)
and decoded in the parallel map. With `cache=True` the labeled stream decodes its few
images once and caches the decoded, unaugmented examples in memory (then shuffles
decoded examples); use it when the labeled set is small and decoding shows in a profile.
The labeled stream reads the files in a fixed order, so that the cached and the
uncached stream shuffle the same sequence with the same seeds and are equal.
The unlabeled stream (every training image) is never cached.

Files. Which files a pattern means, their ids and the schema check are
`pipelines.dataset_files`' (`list_files` and `read_ids` are re-exported here). The
labeled and evaluation streams decode with `require_parts`: a box-only record among
them is refused where it is read, naming it.

The labeled subset is chosen at training time (DESIGN.md §1): `read_ids` lists the ids
of the training files and `select_labeled_ids` picks N of them by seed, or checks an
explicit list.
"""

from __future__ import annotations

import collections
import dataclasses
import functools

import numpy as np
import tensorflow as tf

from pipelines import augment, dataset_files, decode, merge, schema

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class StreamNeeds:
    """What a training method reads of the unlabeled stream (`train_dataset`).

    Each objective of `coseg_tf.objectives` states its needs with one of these; the
    pipeline builds nothing more, so that no method sees what it must not read.

    Args:
      unlabeled: the unlabeled stream at all (False: the labeled stream alone).
      image_labels: the image-level labels of the unlabeled images ("image_labels").
      strong_views: 0, 1 or 2 strong views of each unlabeled crop, with their CutMix
        boxes (`STRONG_VIEW_KEYS`; `augment.strong_view`).
    """

    unlabeled: bool = True
    image_labels: bool = False
    strong_views: int = 0

    def __post_init__(self):
        if self.strong_views not in range(len(STRONG_VIEW_KEYS) + 1):
            raise ValueError(f"StreamNeeds: strong_views must be 0 to "
                             f"{len(STRONG_VIEW_KEYS)}, got {self.strong_views!r}")
        if (self.image_labels or self.strong_views) and not self.unlabeled:
            raise ValueError("StreamNeeds: image_labels and strong_views are parts of the "
                             "unlabeled stream; they need unlabeled=True")


# The keys of the strong views of an unlabeled element: (strong image, CutMix box) of
# the first view, then of the second.
STRONG_VIEW_KEYS = (("strong_image", "cutmix_box"), ("strong_image_2", "cutmix_box_2"))

# Default shuffle buffer of the unlabeled stream, in serialized records.
UNLABELED_SHUFFLE_BUFFER = 1024

# Stream numbers folded into the augmentation seeds, so that the labeled and the
# unlabeled stream never share random draws.
_LABELED_STREAM = 1
_UNLABELED_STREAM = 2
# Folded into an unlabeled element's key (plus the view number) for its strong views:
# the flip, scale and crop draws of the element stay what they are without them.
_STRONG_VIEW_SALT = 100

# === Files and ids ===
# The dataset files are dataset_files'; these two are re-exported for callers.
list_files = dataset_files.list_files
read_ids = dataset_files.read_ids


def select_labeled_ids(all_ids, *, num_labeled, seed, labeled_ids=None) -> list:
    """The labeled subset: `num_labeled` ids chosen by `seed`, or an explicit list.

    Args:
      all_ids: the ids of the training images (the pool).
      num_labeled: how many to choose. With `labeled_ids`, None or len(labeled_ids).
      seed: the labeled-set seed. The pool is sorted and permuted by
        `np.random.RandomState(seed)`; the first `num_labeled` of the permutation are
        chosen, so for one seed a smaller set is inside a larger one.
      labeled_ids: an explicit list of ids (each must be in `all_ids`), or None.

    Returns:
      The chosen ids, sorted (an explicit list keeps its order).
    """
    pool = sorted(set(all_ids))
    if labeled_ids is not None:
        labeled_ids = [str(i) for i in labeled_ids]
        if not labeled_ids:
            raise ValueError("labeled_ids is empty")
        repeated = sorted(i for i, n in collections.Counter(labeled_ids).items() if n > 1)
        if repeated:
            raise ValueError(f"labeled_ids repeats {repeated}")
        known = set(pool)
        unknown = [i for i in labeled_ids if i not in known]
        if unknown:
            raise ValueError(
                f"{len(unknown)} of the {len(labeled_ids)} labeled_ids are not among the "
                f"{len(pool)} training images: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
        if num_labeled is not None and num_labeled != len(labeled_ids):
            raise ValueError(f"num_labeled={num_labeled} but labeled_ids holds "
                             f"{len(labeled_ids)} ids; pass one of the two")
        return labeled_ids
    if isinstance(num_labeled, bool) or not isinstance(num_labeled, (int, np.integer)):
        raise ValueError(f"num_labeled must be an int, got {num_labeled!r}")
    if not 0 < num_labeled <= len(pool):
        raise ValueError(f"num_labeled={num_labeled} is out of range: the pool holds "
                         f"{len(pool)} training images (need 1 <= num_labeled <= "
                         f"{len(pool)})")
    order = np.random.RandomState(seed).permutation(len(pool))
    return sorted(pool[i] for i in order[:num_labeled])


# === A record the pipeline cannot read, found after the fact ===

def _from_the_data(error) -> bool:
    """Whether `error` was raised while reading or decoding records (tf.data)."""
    text = str(getattr(error, "message", error))
    return (decode.bad_record_in(error) is not None or "IteratorGetNext" in text
            or "Iterator::" in text or isinstance(error, tf.errors.DataLossError))


def _record_id(serialized) -> str:
    try:
        spec = {schema.KEY_ID: tf.io.FixedLenFeature([], tf.string)}
        return tf.io.parse_single_example(serialized, spec)[schema.KEY_ID].numpy().decode(
            "utf-8", "replace")
    except (tf.errors.OpError, UnicodeError):
        return "?"


def _where(flag, pattern, path, index, image_id) -> str:
    return (f"--{flag}={pattern}: record {index} of {path} (image id {image_id!r})")


def _scan_for_bad_record(patterns):
    """(flag, pattern, path, index, image id, problem) of the first record of the files
    that does not read or decode; None when every record does."""
    decode_fn = tf.function(decode.decode_example)
    for flag, pattern in patterns.items():
        for path in list_files(pattern):
            index = -1
            try:
                for index, serialized in enumerate(tf.data.TFRecordDataset(path)):
                    try:
                        decode_fn(serialized)
                    except tf.errors.InvalidArgumentError as e:
                        found = decode.bad_record_in(e)
                        problem = found[1] if found else e.message.split("\n")[0]
                        return flag, pattern, path, index, _record_id(serialized), problem
            except tf.errors.OpError as e:  # DataLossError: a truncated or corrupt file
                return (flag, pattern, path, index + 1, "?",
                        f"the file is truncated or corrupt there ({e.message.strip()})")
    return None


def locate_bad_record(error, patterns) -> str | None:
    """A message naming the record (file, position, image id) behind a data error.

    Args:
      error: an exception raised while the pipeline read its records (a record check of
        `decode.decode_example`, a JPEG TensorFlow cannot decode, a corrupt file).
      patterns: {flag name: file pattern} of what the run reads, e.g.
        {"train_data": ..., "val_data": ...}; None patterns are skipped.

    Returns:
      "--FLAG=PATTERN: record N of FILE (image id 'ID'): PROBLEM; ...", or None when
      `error` does not come from the data (or no record of the files is at fault).

    A checked record carries its id in the error, and only its file is searched (ids
    only); otherwise the files are read again record by record until one fails.
    """
    patterns = {flag: p for flag, p in patterns.items() if p}
    if not _from_the_data(error):
        return None
    advice = ("; remove or repair that record (validation reads only the first record "
              "of each file)")
    found = decode.bad_record_in(error)
    if found is not None:
        image_id, problem = found
        for flag, pattern in patterns.items():
            for path in list_files(pattern):
                ids = dataset_files.scan_ids([path])
                if image_id in ids:
                    return (_where(flag, pattern, path, ids.index(image_id), image_id)
                            + f": {problem}{advice}")
    scanned = _scan_for_bad_record(patterns)
    if scanned is None:
        return None
    flag, pattern, path, index, image_id, problem = scanned
    return _where(flag, pattern, path, index, image_id) + f": {problem}{advice}"


# === Building blocks ===

def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_augment_args(*, batch_size_name, batch_size, crop_size, min_scale, max_scale,
                        human_region_mode):
    _check_positive_int(batch_size_name, batch_size)
    _check_positive_int("crop_size", crop_size)
    if not 0 < min_scale <= max_scale:
        raise ValueError(f"need 0 < min_scale <= max_scale, got min_scale={min_scale}, "
                         f"max_scale={max_scale}")
    merge.check_human_region_mode(human_region_mode)


def _records(files: list, order_seed=None) -> tf.data.Dataset:
    """Serialized records of `files`, the files in their order or permuted.

    `order_seed`: None keeps the order; a stateless int64 [2] seed picks a permutation.
    """
    names = tf.constant(files)
    if order_seed is not None:
        names = tf.gather(names, tf.argsort(tf.random.stateless_uniform([len(files)],
                                                                        order_seed)))
    return tf.data.Dataset.from_tensor_slices(names).interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
        num_parallel_calls=AUTOTUNE, deterministic=True)


def _epoch_seeds(epoch, seed: int, stream: int):
    """int64 [2, 2]: stateless seeds (file order, record order) of the epoch `epoch`.

    The base [seed, -stream] differs from the augmentation base [seed, stream].
    """
    base = tf.constant([seed, -stream], tf.int64)
    key = tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))
    return tf.random.experimental.stateless_split(key, 2)


def _shuffle(ds: tf.data.Dataset, buffer_size, seed) -> tf.data.Dataset:
    """`ds.shuffle(buffer_size)` in an order that depends on `seed` (int64 [2]) alone.

    `Dataset.shuffle(seed=s)` runs the kernel with seeds (global seed, s), the global
    seed being `tf.random.set_seed`'s or, when none is set, a default: its order changes
    with global state. This builds the same kernel (ShuffleDatasetV3, as
    `Dataset.shuffle` does) with both seeds given and no reshuffle: every iteration of
    the result has the same order; a new order needs a new seed.
    """
    flat = tf.nest.flatten(ds.element_spec)
    if not all(isinstance(s, tf.TensorSpec) for s in flat):
        raise TypeError(f"_shuffle takes datasets of dense tensors, got {ds.element_spec}")
    seed = tf.cast(seed, tf.int64)
    seed1, seed2 = seed[0], seed[1]
    # Seeds (0, 0) would ask the kernel for a nondeterministic seed (as get_seed avoids).
    seed2 = tf.where(tf.logical_and(tf.equal(seed1, 0), tf.equal(seed2, 0)),
                     tf.constant(2**31 - 1, tf.int64), seed2)
    variant = tf.raw_ops.ShuffleDatasetV3(
        input_dataset=tf.data.experimental.to_variant(ds),
        buffer_size=tf.cast(buffer_size, tf.int64), seed=seed1, seed2=seed2,
        seed_generator=tf.raw_ops.DummySeedGenerator(),
        output_types=[s.dtype for s in flat], output_shapes=[s.shape for s in flat],
        reshuffle_each_iteration=False)
    return tf.data.experimental.from_variant(variant, ds.element_spec)


def _epochs(probe: tf.data.Dataset, first_epoch: int = 0) -> tf.data.Dataset:
    """int64 epoch numbers first_epoch, first_epoch + 1, ... when `probe` has an
    element, none when it is empty.

    `epochs.flat_map(one_epoch)` is the repeat of the streams. Over a bare range it would
    search forever when every epoch is empty; the probe ends the stream then, as
    `Dataset.repeat` does. The probe is read once, up to its first element.
    """
    first = probe.take(1).map(lambda *_: tf.constant(0, tf.int64)).cache()
    return first.repeat().enumerate(start=first_epoch).map(lambda epoch, _: epoch)


def _repeated(probe: tf.data.Dataset, one_epoch, *, start: int = 0,
              epoch_size: int = 0) -> tf.data.Dataset:
    """The epochs `one_epoch(0)`, `one_epoch(1)`, ... in a row, forever, from element
    `start` on.

    Infinite cardinality, as `Dataset.repeat()` gives; a stream with no element (the
    probe is empty) fails when read instead of ending silently. With `start` > 0 (a
    resumed run) the stream is the one that began at 0, less its first `start`
    elements: whole epochs are skipped by number (each epoch's order depends on its
    number alone), then the first start % epoch_size records of the next, still
    serialized (nothing decoded). `epoch_size` is the number of records in an epoch.
    """
    first_epoch, skip = divmod(start, epoch_size) if start else (0, 0)
    ds = _epochs(probe, first_epoch).flat_map(one_epoch).skip(skip)
    return ds.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))


def _check_start(start):
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be an int >= 0, got {start!r}")
    return int(start)


def _element_key(index, seed: int, stream: int):
    """int64 [2]: the stateless key of the element `index` of a stream."""
    base = tf.constant([seed, stream], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, tf.cast(index, tf.int64))


def _element_seeds(index, seed: int, stream: int):
    """int64 [3, 2]: stateless seeds (flip, scale, crop) of the element `index`."""
    return tf.random.experimental.stateless_split(_element_key(index, seed, stream), 3)


def _strong_view_seed(index, seed: int, view: int):
    """int64 [2]: the seed of strong view `view` (0 or 1) of unlabeled element `index`."""
    return tf.random.experimental.stateless_fold_in(
        _element_key(index, seed, _UNLABELED_STREAM), _STRONG_VIEW_SALT + view)


def _augment(example, seeds, *, min_scale, max_scale, crop_size):
    """Scale and crop-or-pad (the flip happens before merging, on the fine map)."""
    example = augment.random_scale(example, min_scale, max_scale, seeds[1])
    return augment.random_crop_or_pad(example, crop_size, seeds[2])


def _decoded(x):
    """A decoded example of a record that must carry parts, from a serialized record,
    or the (cached) decoded example."""
    return x if isinstance(x, dict) else _decode_labeled(x)


# Labeled and evaluation records must carry parts: a box-only record is refused, named.
_decode_labeled = functools.partial(decode.decode_example, require_parts=True)


def _flip_permutation(scheme):
    """The fine-part flip table of the scheme's vocabulary (Pascal-Part's if unbound)."""
    vocabulary = scheme.vocabulary if scheme is not None else None
    return (vocabulary or schema.PASCAL_PART).flip_permutation()


# === Streams ===

def labeled_dataset(file_pattern, *, ids, scheme, batch_size, crop_size, min_scale=0.5,
                    max_scale=1.5, flip=True, human_region_mode="boxes", seed=0,
                    shuffle_buffer=None, cache=False, check_ids=True,
                    start=0) -> tf.data.Dataset:
    """The labeled training stream: the records whose id is in `ids`, repeated.

    Args:
      file_pattern: the training TFRecords (glob or comma-separated globs).
      ids: the labeled ids (`select_labeled_ids`).
      scheme: merge scheme (a `schema.Scheme` or its name).
      batch_size: GLOBAL batch size.
      crop_size: side of the square training crop.
      min_scale, max_scale: range of the random scale.
      flip: random horizontal flip (left/right parts swapped).
      human_region_mode: 'boxes' or 'instance'.
      seed: shuffle and augmentation seed.
      shuffle_buffer: records in the shuffle buffer; None = all of `ids`.
      cache: cache the decoded, unaugmented examples in memory (small sets).
      check_ids: check eagerly that every id is in the files (a missing id would
        otherwise shrink the stream silently).
      start: elements (images) of the stream already consumed: the stream that began
        at 0, from element `start` on (a resumed run's position). Same elements, same
        augmentation.
    """
    start = _check_start(start)
    scheme = merge.as_scheme(scheme)
    permutation = _flip_permutation(scheme)
    _check_augment_args(batch_size_name="batch_size", batch_size=batch_size,
                        crop_size=crop_size, min_scale=min_scale, max_scale=max_scale,
                        human_region_mode=human_region_mode)
    ids = [str(i) for i in ids]
    if not ids:
        raise ValueError("labeled_dataset: ids is empty")
    files = list_files(file_pattern)
    if check_ids or start:
        all_ids = read_ids(file_pattern)
        present = set(all_ids)
        absent = [i for i in ids if i not in present]
        if absent:
            raise ValueError(f"{len(absent)} labeled ids are not in {file_pattern!r}: "
                             f"{absent[:10]}")
        wanted = set(ids)
        epoch_size = sum(1 for i in all_ids if i in wanted)  # records the filter passes

    # A static hash table of the labeled ids; a record passes when its id is in it.
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.ones([len(ids)], tf.int32)),
        default_value=0)
    id_spec = {schema.KEY_ID: tf.io.FixedLenFeature([], tf.string)}

    def is_labeled(serialized):
        return table.lookup(tf.io.parse_single_example(serialized, id_spec)[schema.KEY_ID]) > 0

    def element(index, x):
        seeds = _element_seeds(index, seed, _LABELED_STREAM)
        example = _decoded(x)
        if flip:  # on the fine map, before merging: left and right parts swap
            example = augment.random_flip(example, seeds[0], permutation)
        example = merge.add_training_targets(example, scheme=scheme,
                                             human_region_mode=human_region_mode)
        example = {k: example[k] for k in ("image", "human_region", "labels", "id")}
        example = _augment(example, seeds, min_scale=min_scale,
                           max_scale=max_scale, crop_size=crop_size)
        return {k: example[k] for k in ("image", "human_region", "labels", "id")}

    # The files in a fixed order: the cache holds one pass, and the uncached stream must
    # shuffle the same sequence to equal it.
    records = _records(files).filter(is_labeled)
    pool = records
    if cache:
        pool = records.map(_decode_labeled, num_parallel_calls=AUTOTUNE).cache()
    buffer_size = shuffle_buffer or len(ids)

    def one_epoch(epoch):
        return _shuffle(pool, buffer_size, _epoch_seeds(epoch, seed, _LABELED_STREAM)[1])

    # Fixed order: shuffle (each epoch by its own seed) -> repeat (`_repeated`) ->
    # map (decode when not cached, targets, augment) -> batch (drop_remainder: static
    # batch size for training) -> prefetch.
    ds = _repeated(records, one_epoch, start=start,
                   epoch_size=epoch_size if start else 0)
    # element index across epochs -> its augmentation seeds
    ds = ds.enumerate(start=start)
    ds = ds.map(element, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.prefetch(AUTOTUNE)


def unlabeled_dataset(file_pattern, *, batch_size, crop_size, min_scale=0.5, max_scale=1.5,
                      flip=True, human_region_mode="boxes", seed=0,
                      shuffle_buffer=UNLABELED_SHUFFLE_BUFFER, diagnostics=False,
                      image_labels=False, strong_views=0, scheme=None, start=0) -> tf.data.Dataset:
    """The unlabeled training stream over ALL training images, without part labels.

    `file_pattern` may hold records with parts (their labels hidden) and box-only
    records (`pipelines/schema.py` annotation/kind "boxes": the paper's pool of images
    with only a human box), mixed. The fine part map leaves the element right after
    decoding, unless `diagnostics` or `image_labels` asks for it, and the instance mask
    right after the human region is computed; the element keeps "image",
    "human_region" and "id" only. A box-only record has no instance mask: read such
    records with human_region_mode 'boxes' (train.py refuses 'instance'). With `diagnostics=True` (and a `scheme`), the merged
    labels ride along under "diagnostic_labels" (255 in padding), for the
    mining-precision metric alone. With `image_labels=True` (and a `scheme`), the
    image-level labels of the whole image (`image_labels_of`, computed before any crop)
    ride along under "image_labels", for the image-label baselines (GMP, EM-Adapt).
    With `strong_views=1` (or 2), each crop also gets a strong view, "strong_image"
    (and "strong_image_2"): the same crop with photometric changes only, and a CutMix
    box, "cutmix_box" (and "cutmix_box_2") (`augment.strong_view`; drawn from seeds of
    their own, so the other keys are the same with or without them).

    Args:
      file_pattern: the training TFRecords (glob or comma-separated globs).
      batch_size: GLOBAL batch size.
      crop_size, min_scale, max_scale, flip, human_region_mode, seed: as in
        `labeled_dataset`.
      shuffle_buffer: records in the shuffle buffer.
      diagnostics: carry the hidden labels under "diagnostic_labels".
      image_labels: carry the image-level labels under "image_labels".
      strong_views: 0, 1 or 2 strong views of each crop (`STRONG_VIEW_KEYS`).
      scheme: merge scheme of the diagnostic and image-level labels (required with
        either).
      start: elements (images) already consumed, as in `labeled_dataset`.
    """
    start = _check_start(start)
    _check_augment_args(batch_size_name="batch_size", batch_size=batch_size,
                        crop_size=crop_size, min_scale=min_scale, max_scale=max_scale,
                        human_region_mode=human_region_mode)
    if diagnostics or image_labels:
        if scheme is None:
            raise ValueError("unlabeled_dataset: diagnostics=True and image_labels=True "
                             "need a scheme")
        scheme = merge.as_scheme(scheme)
    permutation = _flip_permutation(scheme if diagnostics or image_labels else None)
    _check_positive_int("shuffle_buffer", shuffle_buffer)
    StreamNeeds(strong_views=strong_views)  # checks the count
    files = list_files(file_pattern)
    keys = (("image", "human_region", "id")
            + (("diagnostic_labels",) if diagnostics else ())
            + (("image_labels",) if image_labels else ())
            + tuple(k for pair in STRONG_VIEW_KEYS[:strong_views] for k in pair))

    def element(index, serialized):
        seeds = _element_seeds(index, seed, _UNLABELED_STREAM)
        example = decode.decode_example(serialized,
                                        require_parts=diagnostics or image_labels)
        # No part label goes further unless a diagnostic or the image labels read it.
        keep = {"image", "boxes", "height", "width", "id", "person_mask"}
        if diagnostics or image_labels:
            keep.add("parts_fine")
        example = {k: v for k, v in example.items() if k in keep}
        if flip:
            example = augment.random_flip(example, seeds[0], permutation)
        out = {
            "image": example["image"],
            "human_region": merge.human_region(
                example["boxes"], example["person_mask"], example["height"],
                example["width"], mode=human_region_mode),
            "id": example["id"],
        }
        if diagnostics or image_labels:
            merged = merge.merge_parts(example["parts_fine"], example["person_mask"], scheme)
        if diagnostics:
            out["diagnostic_labels"] = merged
        if image_labels:
            out["image_labels"] = image_labels_of(merged, scheme.num_classes)
        # From here on no part label is in the element (unless diagnostics).
        out = _augment(out, seeds, min_scale=min_scale, max_scale=max_scale,
                       crop_size=crop_size)
        # Strong views of the crop: photometric changes only, the geometry of the weak
        # view (the crop itself), so that every map above holds for them too.
        for view, (image_key, box_key) in enumerate(STRONG_VIEW_KEYS[:strong_views]):
            out = augment.strong_view(out, _strong_view_seed(index, seed, view),
                                      image_key=image_key, box_key=box_key)
        return {k: out[k] for k in keys}

    def one_epoch(epoch):
        file_seed, record_seed = tf.unstack(_epoch_seeds(epoch, seed, _UNLABELED_STREAM))
        records = _records(files, order_seed=file_seed)
        return _shuffle(records, shuffle_buffer, record_seed)

    # Fixed order: shuffle (file order and records, each epoch by its own seeds) ->
    # repeat (`_repeated`) -> map (decode, region, augment) -> batch
    # (drop_remainder: static batch size for training) -> prefetch.
    ds = _repeated(tf.data.TFRecordDataset(files), one_epoch, start=start,
                   epoch_size=len(read_ids(file_pattern)) if start else 0)
    ds = ds.enumerate(start=start)  # element index across epochs -> augmentation seeds
    ds = ds.map(element, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.prefetch(AUTOTUNE)


def train_dataset(file_pattern, *, scheme, labeled_ids, batch_labeled, batch_unlabeled,
                  crop_size, needs=StreamNeeds(), min_scale=0.5, max_scale=1.5, flip=True,
                  human_region_mode="boxes", diagnostics=False, seed=0,
                  shuffle_buffer=UNLABELED_SHUFFLE_BUFFER, cache_labeled=False,
                  check_ids=True, start_batch=0, unlabeled_pattern=None) -> tf.data.Dataset:
    """{"labeled": ..., "unlabeled": ...} per step ({"labeled": ...} without unlabeled).

    The two streams are zipped (keras-io semisupervised_simclr); `train_step` unpacks
    the pair. Both repeat forever.

    Args:
      file_pattern: the training TFRecords.
      scheme: merge scheme (a `schema.Scheme` or its name).
      labeled_ids: the labeled ids (`select_labeled_ids`).
      batch_labeled, batch_unlabeled: GLOBAL batch sizes (per replica x replicas).
      crop_size, min_scale, max_scale, flip, human_region_mode, seed: as in
        `labeled_dataset`, for both streams.
      needs: what the training method reads (`StreamNeeds`, from its objective):
        the unlabeled stream at all, its image-level labels (the trainer refuses them
        for a method that does not read them), its strong views.
      diagnostics: the unlabeled stream carries "diagnostic_labels".
      shuffle_buffer: shuffle buffer of the unlabeled stream (the labeled stream
        shuffles all its records).
      cache_labeled: cache the decoded labeled examples (see the module docstring).
      check_ids: check eagerly that every labeled id is in the files.
      start_batch: batches already consumed (a resumed run's data position): both
        streams continue exactly where the stream that began at 0 would be.
      unlabeled_pattern: the records of the unlabeled stream (e.g. box-only records);
        None = `file_pattern`, every training image with its labels hidden.
    """
    if not isinstance(needs, StreamNeeds):
        raise TypeError(f"needs must be a streams.StreamNeeds, got {needs!r}")
    _check_positive_int("batch_labeled", batch_labeled)
    if needs.unlabeled:
        _check_positive_int("batch_unlabeled", batch_unlabeled)
    common = dict(crop_size=crop_size, min_scale=min_scale, max_scale=max_scale, flip=flip,
                  human_region_mode=human_region_mode, seed=seed)
    start_batch = _check_start(start_batch)
    labeled = labeled_dataset(file_pattern, ids=labeled_ids, scheme=scheme,
                              batch_size=batch_labeled, cache=cache_labeled,
                              check_ids=check_ids, start=start_batch * batch_labeled,
                              **common)
    if not needs.unlabeled:
        return tf.data.Dataset.zip({"labeled": labeled})
    unlabeled = unlabeled_dataset(unlabeled_pattern or file_pattern,
                                  batch_size=batch_unlabeled,
                                  shuffle_buffer=shuffle_buffer, diagnostics=diagnostics,
                                  image_labels=needs.image_labels,
                                  strong_views=needs.strong_views, scheme=scheme,
                                  start=start_batch * batch_unlabeled, **common)
    return tf.data.Dataset.zip({"labeled": labeled, "unlabeled": unlabeled})


def image_labels_of(merged_labels, num_classes) -> tf.Tensor:
    """float32 [C] image-level labels: 1 for each class with a pixel in `merged_labels`.

    `merged_labels` is a whole image's merged label map ([H, W] or [H, W, 1], 255 =
    ignore, not counted). The background (class 0) is always 1: every image with a
    person box has background, and the image-label methods treat it as present.
    """
    flat = tf.reshape(tf.cast(merged_labels, tf.int32), [-1])
    flat = tf.boolean_mask(flat, tf.logical_and(flat >= 0, flat < num_classes))
    counts = tf.math.bincount(flat, minlength=num_classes, maxlength=num_classes)
    present = tf.cast(counts > 0, tf.float32)
    return tf.maximum(present, tf.one_hot(0, num_classes, dtype=tf.float32))


def image_level_labels(file_pattern, *, scheme) -> dict:
    """{id: float32 numpy [C]} image-level labels of every image in the files.

    The same labels the unlabeled stream carries with `image_labels=True` (one pass
    over the records, no augmentation); the trainer records them in the run directory.
    """
    scheme = merge.as_scheme(scheme)
    files = list_files(file_pattern)

    def element(serialized):
        example = _decode_labeled(serialized)
        merged = merge.merge_parts(example["parts_fine"], example["person_mask"], scheme)
        return example["id"], image_labels_of(merged, scheme.num_classes)

    ds = tf.data.TFRecordDataset(files).map(element, num_parallel_calls=AUTOTUNE,
                                            deterministic=True)
    return {i.decode(): labels for i, labels in ds.as_numpy_iterator()}


def eval_dataset(file_pattern, *, scheme, human_region_mode="boxes") -> tf.data.Dataset:
    """Whole images in file order, batch 1, no augmentation, one pass.

    Elements: {"image" float32 [1, H, W, 3] RGB 0..255, "human_region" float32
    [1, H, W, 1], "labels" int32 [1, H, W], "id" string [1]}.
    """
    scheme = merge.as_scheme(scheme)
    merge.check_human_region_mode(human_region_mode)
    files = list_files(file_pattern)

    def element(serialized):
        example = merge.add_training_targets(_decode_labeled(serialized),
                                             scheme=scheme,
                                             human_region_mode=human_region_mode)
        return {"image": tf.cast(example["image"], tf.float32),
                "human_region": example["human_region"],
                "labels": example["labels"],
                "id": example["id"]}

    # Evaluation: no shuffle, no repeat; map -> batch (1 whole image) -> prefetch.
    ds = tf.data.TFRecordDataset(files)
    ds = ds.map(element, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(1, drop_remainder=True)  # drops nothing at batch 1; static batch dim
    return ds.prefetch(AUTOTUNE)
