"""Export of a trained part segmenter as a SavedModel that TF Serving loads.

`export.py` turns its flags into an `ExportConfig` once and calls `run_export`; tests
and tools call `export_saved_model` with an in-memory network. Nothing here reads absl
flags.

Layout (TF Serving's: one integer-named directory per version, the highest served):

    EXPORT_DIR/
      1/ 2/ ...            earlier versions, left alone
      <version>/
        saved_model.pb     the graph and its signatures (tag "serve")
        variables/         the network's weights (stored once: see below)
        assets/class_names.txt   the class names, one a line (class id = line number)
        assets/model.json        the run's model.json (parts, width, human-region mode)

A version is written to a hidden temporary sibling (`EXPORT_DIR/.tmp-<version>-<hex>`)
and renamed into place once complete: TF Serving only looks at integer-named
directories, so a half-written export is never loaded. An existing version is refused
unless `overwrite=True`, which swaps the new one in and then deletes the old one.

Signatures (both at the input's resolution; any size, one size per batch):

  serving_default   image        uint8   [batch, height, width, 3]  RGB 0..255
                    human_boxes  float32 [batch, N, 4]  normalized (ymin, xmin, ymax,
                                 xmax) of the persons; all-zero rows are padding
  serve_mask        image        uint8   [batch, height, width, 3]
                    human_mask   uint8   [batch, height, width]  nonzero = human
  outputs (both)    labels        int32   [batch, height, width]  the arg max class id
                    probabilities float32 [batch, height, width, classes]

The human region of `serving_default` is the union of the boxes, pixel (r, c) inside a
box when ymin * H <= r + 0.5 < ymax * H and xmin * W <= c + 0.5 < xmax * W: exactly
`pipelines.merge.human_region`, the region the network was trained with. The stride-8
logits are upsampled bilinearly on the network's grid (cell k on pixel 8k, as
`coseg_tf.grid.upsample_logits`) and then soft-maxed. An image without any human
region (all boxes zero) gets fc8's bias at every pixel: finite, one class everywhere.

Bad requests are refused before any work. A wrong dtype is refused by the function's
typed inputs ("expected to be a uint8 tensor but is a float tensor"). Rank, channel
count, image size (at least 1 x 1: an empty image would fail deep inside the network),
box width, box range and batch/size agreement are checked by assertions inside
the graph, whose messages name the signature, the input and the shape received: TF
Serving (and a loaded signature given tensors) does not check shapes against the
signature. The rank check reads the shape at run time on purpose: Grappler folds
`tf.rank` to the signature's static rank. (A loaded signature given NumPy arrays goes
through TensorFlow's Python binding instead, which checks shapes and casts the values
to the signature's dtypes.)

The class names are the asset `class_names.txt` (`loaded.class_names_file.asset_path`
in Python; `EXPORT_DIR/<version>/assets/class_names.txt` on disk): line i is class i.

Why a `tf.Module` and not Keras' `ExportArchive`: the archive stores the variables
twice. Measured for the full-width network (20.5 M parameters, 82 MB of float32):
`du` gives 80M for this export (79M of variables) against 157M for an ExportArchive.

A REST request's JSON can be decoded here the way TF Serving decodes it
(`decode_rest_request`) to check a client offline against the exported signatures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import sys
import tempfile
import uuid
from typing import Mapping, Optional

import numpy as np
import tensorflow as tf

from coseg_tf import errors, grid, run_dir

ConfigError = errors.ConfigError

DEFAULT_SIGNATURE = "serving_default"
MASK_SIGNATURE = "serve_mask"
CLASS_NAMES_ASSET = "class_names.txt"
MODEL_INFO_ASSET = "model.json"
_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"

IMAGE_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")
BOXES_SPEC = tf.TensorSpec([None, None, 4], tf.float32, name="human_boxes")
MASK_SPEC = tf.TensorSpec([None, None, None], tf.uint8, name="human_mask")


@dataclasses.dataclass
class ExportConfig:
    """Everything an export needs; field names equal the flag names of export.py.

    Args:
      model_dir: a training run directory (`coseg_tf.run_dir`).
      export_dir: the model's base directory for TF Serving (versions go beneath).
      checkpoint: 'last', 'best', or the path of a `.weights.h5` of the run.
      version: the integer version to write; None = the next free one.
      overwrite: replace an existing version.
    """
    model_dir: str
    export_dir: str
    checkpoint: str = "last"
    version: Optional[int] = None
    overwrite: bool = False


@dataclasses.dataclass
class ExportResult:
    """What `run_export` wrote: the version's directory, its number and size in bytes."""
    path: str
    version: int
    size_bytes: int


# === Graph pieces ===

def human_region_from_boxes(boxes, height, width) -> tf.Tensor:
    """float32 [B, H, W, 1] in {0, 1}: the union of each image's boxes.

    The batched form of `pipelines.merge.human_region(..., mode='boxes')`, with the same
    arithmetic, so the two agree bit for bit: pixel (r, c) is inside a box when
    ymin * H <= r + 0.5 < ymax * H and xmin * W <= c + 0.5 < xmax * W. All-zero (and any
    empty or degenerate) boxes cover nothing.

    Args:
      boxes: float32 [B, N, 4] normalized (ymin, xmin, ymax, xmax); N may be 0.
      height, width: the image size H, W (int scalars).
    """
    boxes = tf.cast(boxes, tf.float32)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    rows = tf.range(tf.cast(height, tf.int32), dtype=tf.float32) + 0.5  # [H]
    cols = tf.range(tf.cast(width, tf.int32), dtype=tf.float32) + 0.5   # [W]
    # [B, N, H] / [B, N, W]: 1 where the row / column centre is inside box n.
    in_rows = tf.cast((rows[None, None, :] >= boxes[:, :, 0:1] * h)
                      & (rows[None, None, :] < boxes[:, :, 2:3] * h), tf.float32)
    in_cols = tf.cast((cols[None, None, :] >= boxes[:, :, 1:2] * w)
                      & (cols[None, None, :] < boxes[:, :, 3:4] * w), tf.float32)
    # [B, H, W] number of boxes covering each pixel.
    count = tf.matmul(in_rows, in_cols, transpose_a=True)
    return tf.cast(count > 0, tf.float32)[..., None]


def _runtime_rank(x):
    """The rank of `x` as read at run time (Grappler folds `tf.rank` to the static one)."""
    return tf.shape(tf.where(tf.shape(x) >= 0), out_type=tf.int32)[0]


def _check(condition, *message):
    return tf.Assert(condition, list(message), summarize=8)


def _checked_image(image, signature):
    """`image` after asserting it is [B, H, W, 3] (a clear error instead of a deep one)."""
    shape = tf.shape(image)
    rank_ok = _check(tf.equal(_runtime_rank(image), 4),
                     f"{signature}: `image` must be uint8 [batch, height, width, 3] (RGB); "
                     "got shape", shape)
    with tf.control_dependencies([rank_ok]):
        channels_ok = _check(tf.equal(shape[-1], 3),
                             f"{signature}: `image` must have 3 channels (RGB); got shape",
                             shape)
        # An empty image would otherwise fail deep inside the network (with oneDNN:
        # "input depth must be evenly divisible"), or return an empty map without it.
        size_ok = _check(tf.reduce_all(shape[1:3] >= 1),
                         f"{signature}: `image` must be at least 1 x 1 pixels (height and "
                         "width >= 1); got shape", shape)
    with tf.control_dependencies([channels_ok, size_ok]):
        return tf.identity(image)


def _checked_boxes(boxes, image_shape):
    """`boxes` after asserting [B, N, 4], the image's batch and values in [0, 1]."""
    shape = tf.shape(boxes)
    rank_ok = _check(tf.equal(_runtime_rank(boxes), 3),
                     f"{DEFAULT_SIGNATURE}: `human_boxes` must be float32 [batch, N, 4]; "
                     "got shape", shape)
    with tf.control_dependencies([rank_ok]):
        width_ok = _check(tf.equal(shape[-1], 4),
                          f"{DEFAULT_SIGNATURE}: `human_boxes` must be [batch, N, 4] "
                          "(ymin, xmin, ymax, xmax); got shape", shape)
    with tf.control_dependencies([width_ok]):
        batch_ok = _check(tf.equal(shape[0], image_shape[0]),
                          f"{DEFAULT_SIGNATURE}: `human_boxes` and `image` must have the "
                          "same batch size; got boxes and image shapes", shape, image_shape)
        # NaN fails too.
        in_range = tf.reduce_all((boxes >= 0.0) & (boxes <= 1.0))
        range_ok = _check(in_range,
                          f"{DEFAULT_SIGNATURE}: `human_boxes` must be normalized "
                          "coordinates in [0, 1]; got min and max",
                          tf.reduce_min(boxes), tf.reduce_max(boxes))
    with tf.control_dependencies([batch_ok, range_ok]):
        return tf.identity(boxes)


def _checked_mask(mask, image_shape):
    """`mask` after asserting it is [B, H, W] with the image's batch and size."""
    shape = tf.shape(mask)
    rank_ok = _check(tf.equal(_runtime_rank(mask), 3),
                     f"{MASK_SIGNATURE}: `human_mask` must be uint8 [batch, height, width]; "
                     "got shape", shape)
    with tf.control_dependencies([rank_ok]):
        size_ok = _check(tf.reduce_all(tf.equal(shape, image_shape[:3])),
                         f"{MASK_SIGNATURE}: `human_mask` must be [batch, height, width] of "
                         "`image`; got mask and image shapes", shape, image_shape)
    with tf.control_dependencies([size_ok]):
        return tf.identity(mask)


# === The served module ===

class SegmentationServer(tf.Module):
    """The network with its serving signatures and class names, ready for
    `tf.saved_model.save`.

    Args:
      network: the functional model of `coseg_tf.model.build_deeplab_largefov`:
        inputs {"image", "human_region"}, outputs {"logits", ...}.
      class_names_path: a text file of the class names, one a line; it becomes the
        asset `class_names.txt` (the file must exist until the module is saved). None
        for a module that is only called, never saved (predict.py's run-directory
        path calls `serve_boxes` in memory: the computation `serving_default` serves).
      model_info_path: optional JSON file of the run's model info (asset `model.json`).
      name: the module's name.

    Example:

    >>> server = SegmentationServer(network, "/tmp/x/class_names.txt")
    >>> tf.saved_model.save(server, path, signatures=server.signatures())
    """

    def __init__(self, network, class_names_path=None, model_info_path=None,
                 name="coseg_segmentation_server"):
        super().__init__(name=name)
        self.network = network
        if class_names_path is not None:
            self.class_names_file = tf.saved_model.Asset(class_names_path)
        if model_info_path is not None:
            self.model_info_file = tf.saved_model.Asset(model_info_path)

    def _segment(self, image, region):
        # image: uint8 [B, H, W, 3]; region: float32 [B, H, W, 1]
        shape = tf.shape(image)
        outputs = self.network({"image": tf.cast(image, tf.float32), "human_region": region},
                               training=False)
        # logits: [B, H, W, C] at the input's resolution
        logits = grid.upsample_logits(outputs["logits"], (shape[1], shape[2]))
        return {"labels": tf.argmax(logits, axis=-1, output_type=tf.int32),
                "probabilities": tf.nn.softmax(logits, axis=-1)}

    @tf.function(input_signature=[IMAGE_SPEC, BOXES_SPEC])
    def serve_boxes(self, image, human_boxes):
        """labels, probabilities of images whose human region is the union of boxes."""
        image = _checked_image(image, DEFAULT_SIGNATURE)
        shape = tf.shape(image)
        human_boxes = _checked_boxes(human_boxes, shape)
        region = human_region_from_boxes(human_boxes, shape[1], shape[2])
        return self._segment(image, region)

    @tf.function(input_signature=[IMAGE_SPEC, MASK_SPEC])
    def serve_mask(self, image, human_mask):
        """labels, probabilities of images whose human region is a mask (nonzero)."""
        image = _checked_image(image, MASK_SIGNATURE)
        human_mask = _checked_mask(human_mask, tf.shape(image))
        region = tf.cast(human_mask > 0, tf.float32)[..., None]
        return self._segment(image, region)

    def signatures(self) -> dict:
        """{signature key: concrete function} for `tf.saved_model.save`."""
        return {DEFAULT_SIGNATURE: self.serve_boxes.get_concrete_function(),
                MASK_SIGNATURE: self.serve_mask.get_concrete_function()}


# === Versions and the atomic write ===

def existing_versions(export_dir) -> list:
    """The integer versions under `export_dir` (what TF Serving would consider), sorted."""
    if not tf.io.gfile.isdir(export_dir):
        return []
    names = (n.rstrip("/") for n in tf.io.gfile.listdir(export_dir))
    return sorted(int(n) for n in names
                  if n.isdigit() and tf.io.gfile.isdir(os.path.join(export_dir, n)))


def next_version(export_dir) -> int:
    """One more than the highest existing version; 1 for a new export directory."""
    versions = existing_versions(export_dir)
    return versions[-1] + 1 if versions else 1


def resolve_version(export_dir, version=None, *, overwrite=False) -> int:
    """The version to write, refusing what cannot be done (ConfigError), before any work.

    Args:
      export_dir: the model's base directory.
      version: an int >= 0, or None for `next_version(export_dir)`.
      overwrite: allow replacing an existing version.
    """
    if not export_dir:
        raise ConfigError("--export_dir is required")
    if tf.io.gfile.exists(export_dir) and not tf.io.gfile.isdir(export_dir):
        raise ConfigError(f"--export_dir={export_dir} exists and is not a directory")
    if version is None:
        return next_version(export_dir)
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ConfigError(f"--version must be an integer >= 0 (TF Serving's version "
                          f"directories), got {version!r}")
    version = int(version)
    path = os.path.join(export_dir, str(version))
    if tf.io.gfile.exists(path) and not overwrite:
        raise ConfigError(f"version {version} already exists at {path}; pass --overwrite "
                          f"(overwrite=True) to replace it, or another --version (next "
                          f"free: {next_version(export_dir)})")
    return version


def _remove_tree(path):
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def export_saved_model(network, info, export_dir, *, version=None, overwrite=False) -> str:
    """Writes `network` as version `version` of a TF Serving model; returns its path.

    Args:
      network: the Keras network (`run_dir.load_network` or `build_deeplab_largefov`).
      info: the run's model info (model.json): needs "class_names" (one per output
        class); the rest is stored as the asset model.json.
      export_dir: the model's base directory (created if missing; local or gs://...).
      version: int >= 0, or None for the next free version.
      overwrite: replace an existing version (else ConfigError, nothing written).

    Returns:
      EXPORT_DIR/<version>, complete: it is renamed into place only once written.
    """
    class_names = [str(n) for n in (info or {}).get("class_names") or []]
    num_outputs = network.output["logits"].shape[-1] if isinstance(network.output, dict) \
        else None
    if not class_names:
        raise ConfigError("model info has no class_names: cannot write class_names.txt")
    if num_outputs is not None and len(class_names) != num_outputs:
        raise ConfigError(f"model info names {len(class_names)} classes {class_names} but "
                          f"the network has {num_outputs} outputs")
    if any("\n" in n or not n.strip() for n in class_names):
        raise ConfigError(f"class names must be non-empty single lines, got {class_names}")
    version = resolve_version(export_dir, version, overwrite=overwrite)
    final = os.path.join(export_dir, str(version))
    tmp = os.path.join(export_dir, f"{_TMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    tf.io.gfile.makedirs(export_dir)

    staging = tempfile.mkdtemp(prefix="coseg_export_assets_")
    try:
        names_path = os.path.join(staging, CLASS_NAMES_ASSET)
        with open(names_path, "w", encoding="utf-8") as f:
            f.write("".join(n + "\n" for n in class_names))
        info_path = os.path.join(staging, MODEL_INFO_ASSET)
        with open(info_path, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
            f.write("\n")
        server = SegmentationServer(network, names_path, info_path)
        tf.saved_model.save(server, tmp, signatures=server.signatures())
        if tf.io.gfile.exists(final):
            if not overwrite:  # another export took the version meanwhile
                raise ConfigError(f"version {version} appeared at {final} during the "
                                  "export; nothing replaced")
            old = os.path.join(export_dir, f"{_OLD_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
            tf.io.gfile.rename(final, old)
            tf.io.gfile.rename(tmp, final)
            _remove_tree(old)
        else:
            tf.io.gfile.rename(tmp, final)
    finally:
        _remove_tree(tmp)
        shutil.rmtree(staging, ignore_errors=True)
    return final


def directory_size(path) -> int:
    """Total bytes of the files under `path` (tf.io.gfile, so gs:// works too)."""
    total = 0
    for root, _, files in tf.io.gfile.walk(path):
        for name in files:
            total += tf.io.gfile.stat(os.path.join(root, name)).length
    return total


# === A run directory in, a served version out ===

def validate(config: ExportConfig) -> int:
    """Checks the config before any network is built; returns the version to write."""
    if not config.model_dir:
        raise ConfigError("--model_dir is required (a run directory of train.py)")
    run_dir.read_model_info(config.model_dir)
    run_dir.require_checkpoint(config.model_dir, config.checkpoint)
    return resolve_version(config.export_dir, config.version, overwrite=config.overwrite)


def run_export(config: ExportConfig) -> ExportResult:
    """Exports the checkpoint of a training run as a TF Serving version."""
    version = validate(config)
    network, info = run_dir.load_network(config.model_dir, config.checkpoint)
    path = export_saved_model(network, info, config.export_dir, version=version,
                              overwrite=config.overwrite)
    return ExportResult(path=path, version=version, size_bytes=directory_size(path))


def serving_commands(path, *, model_name=None) -> list:
    """Shell commands that inspect and serve the version at `path` (EXPORT_DIR/<version>).

    The TF Serving binary is not on PyPI: `tensorflow_model_server` comes from Google's
    apt repository or the `tensorflow/serving` Docker image; both commands are given.
    Each argument is quoted for a POSIX shell (`shlex.quote`), so the commands run as
    printed whatever the path holds (spaces, quotes, `$`). Docker's `-v SRC:DST` cannot
    take a path with a colon: such a path needs `--mount` instead.
    """
    path = path.rstrip("/")
    base = os.path.dirname(path)
    if "://" not in base:
        base = os.path.abspath(base)
        path = os.path.abspath(path)
    name = model_name or _model_name(base)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        cli = "saved_model_cli"
    request = ('{"signature_name": "serving_default", "instances": [{"image": '
               '[[[R, G, B], ...], ...], "human_boxes": [[ymin, xmin, ymax, xmax]]}]}')
    # Every argument quoted for a POSIX shell: a path with a space, a quote or a $
    # must reach the program as one argument, unchanged.
    return [_shell_command(argv) for argv in (
        [cli, "show", "--dir", path, "--all"],
        ["tensorflow_model_server", "--rest_api_port=8501", f"--model_name={name}",
         f"--model_base_path={base}"],
        ["docker", "run", "--rm", "-p", "8501:8501", "-v", f"{base}:/models/{name}",
         "-e", f"MODEL_NAME={name}", "tensorflow/serving"],
        ["curl", "-X", "POST", f"http://localhost:8501/v1/models/{name}:predict", "-d",
         request],
    )]


def _shell_command(argv) -> str:
    return " ".join(shlex.quote(str(arg)) for arg in argv)


def _model_name(base):
    name = "".join(c if c.isalnum() or c in "_-" else "_"
                   for c in os.path.basename(base.rstrip("/")))
    return name or "coseg"


def describe_export(result: ExportResult) -> str:
    """The lines export.py ends with: the path, its size, how to inspect and serve it."""
    commands = serving_commands(result.path)
    return "\n".join([
        f"exported version {result.version}: {result.path}",
        f"size: {result.size_bytes / 1e6:.1f} MB ({result.size_bytes} bytes)",
        "inspect:",
        f"  {commands[0]}",
        "serve (REST on :8501; signatures serving_default [image, human_boxes] and "
        "serve_mask [image, human_mask]):",
        f"  {commands[1]}",
        f"  or: {commands[2]}",
        "query:",
        f"  {commands[3]}",
    ])


# === TF Serving's REST request format, decoded offline ===

def _input_specs(signature) -> dict:
    """{input name: TensorSpec} of a concrete function (keyword or positional inputs)."""
    args, kwargs = signature.structured_input_signature
    specs = dict(kwargs)
    for spec in args:
        if not isinstance(spec, tf.TensorSpec) or not spec.name:
            raise ValueError(f"signature input {spec!r} has no name")
        specs[spec.name] = spec
    return specs


def _as_dtype(name, value, dtype: tf.DType) -> np.ndarray:
    """`value` (nested lists of JSON numbers) as an array of `dtype`, refused as TF
    Serving refuses it: a fraction or an out-of-range number for an integer input."""
    try:
        array = np.asarray(value)
    except ValueError as e:  # ragged lists
        raise ValueError(f"input {name!r}: not a rectangular array ({e})") from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ValueError(f"input {name!r}: expected numbers for {dtype.name}, got "
                         f"{array.dtype} values")
    target = dtype.as_numpy_dtype
    if dtype.is_integer or dtype.is_bool:
        if array.dtype.kind == "f" and array.size and not np.all(np.mod(array, 1) == 0):
            raise ValueError(f"input {name!r}: {dtype.name} expects integers, got "
                             "fractional numbers")
        if dtype.is_integer and array.size:
            info = np.iinfo(target)
            if array.min() < info.min or array.max() > info.max:
                raise ValueError(f"input {name!r}: values {array.min()}..{array.max()} "
                                 f"are out of the range of {dtype.name}")
    return array.astype(target)


def decode_rest_request(body, signature) -> dict:
    """The input tensors TF Serving builds from a REST `:predict` request body.

    TF Serving's two request forms:
      row ("instances"): a list, one entry per example; with several inputs each entry
        is {input name: value}; each input's values are stacked along a new batch
        dimension (so every instance must have the same shape);
      columnar ("inputs"): {input name: value} (or a bare value for a single input),
        each value already batched.
    Values are cast to the signature's dtypes (an integer input refuses fractions and
    out-of-range numbers, as TF Serving does).

    Args:
      body: the request as a JSON string/bytes or an already parsed dict.
      signature: a concrete function (`loaded.signatures["serving_default"]`), or a
        mapping of them (`loaded.signatures`), from which the body's "signature_name"
        (default "serving_default") is picked.

    Returns:
      {input name: np.ndarray of the signature's dtype}; call
      `signature(**{k: tf.constant(v) for k, v in inputs.items()})`.

    Raises:
      ValueError naming what is wrong with the body.
    """
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as e:
            raise ValueError(f"request body is not JSON: {e}") from None
    if not isinstance(body, Mapping):
        raise ValueError("request body must be a JSON object")
    if isinstance(signature, Mapping):
        key = body.get("signature_name", DEFAULT_SIGNATURE)
        if key not in signature:
            raise ValueError(f"signature_name {key!r} not found; the model has "
                             f"{sorted(signature)}")
        signature = signature[key]
    specs = _input_specs(signature)
    if ("instances" in body) == ("inputs" in body):
        raise ValueError("request body must have exactly one of 'instances' (row format) "
                         "and 'inputs' (columnar format)")

    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise ValueError("'instances' must be a non-empty list")
        columns = {name: [] for name in specs}
        for i, instance in enumerate(instances):
            if len(specs) == 1 and not isinstance(instance, Mapping):
                instance = {next(iter(specs)): instance}
            if not isinstance(instance, Mapping):
                raise ValueError(f"instance {i}: expected an object with the inputs "
                                 f"{sorted(specs)}")
            _check_names(instance, specs, f"instance {i}")
            for name in specs:
                columns[name].append(_as_dtype(name, instance[name], specs[name].dtype))
        out = {}
        for name, values in columns.items():
            shapes = {v.shape for v in values}
            if len(shapes) > 1:
                raise ValueError(f"input {name!r}: the instances have different shapes "
                                 f"{sorted(shapes)}; TF Serving batches instances, so "
                                 "send one request per shape")
            out[name] = np.stack(values)
    else:
        inputs = body["inputs"]
        if len(specs) == 1 and not isinstance(inputs, Mapping):
            inputs = {next(iter(specs)): inputs}
        if not isinstance(inputs, Mapping):
            raise ValueError(f"'inputs' must be an object with the inputs {sorted(specs)}")
        _check_names(inputs, specs, "'inputs'")
        out = {name: _as_dtype(name, inputs[name], spec.dtype) for name, spec in specs.items()}
    # Like TF Serving, no shape check here: the model's own assertions refuse bad shapes.
    return out


def _check_names(given, specs, where):
    missing = sorted(set(specs) - set(given))
    extra = sorted(set(given) - set(specs))
    if missing or extra:
        raise ValueError(f"{where}: inputs must be {sorted(specs)}; missing {missing}, "
                         f"unexpected {extra}")
