r"""One train step of DeepLab-LargeFOV in PyTorch against ours in TensorFlow, side by side.

The same network as `coseg_tf.model.build_deeplab_largefov` is written here in PyTorch
(VGG16 conv blocks; pools 1-3 max 3x3 stride 2 pad 1, pools 4-5 max 3x3 stride 1 pad 1,
pool5a average 3x3/1 excluding padding as TensorFlow's 'same'; conv5 dilation 2; fc6
3x3 dilation 12; fc7 1x1; dropout 0.5 after both; the human-region masking m = fc7 *
region[:, ::8, ::8]; fc8 1x1; width multiplier as `scaled_channels`). A train step is
forward (dropout on) + mean pixel cross entropy of the logits against labels on the
feature grid + backward + plain SGD with momentum 0.9 (no weight decay), on both sides:
the TensorFlow step runs our real model under one `tf.function` with a Keras SGD.

Each framework runs in a worker process of its own interpreter (PyTorch from its own
venv, TensorFlow from the repo's .venv), started once, warmed up, then driven over a
pipe: the driver asks each case for one step in turn, A, B, A, B, ... (the order
reversed every other round), so only one of them computes at any time. Each case's
time is measured inside its worker (the step alone, no start-up). The printed ratio
TF / PyTorch is the median over rounds of the ratio within a round (as tools/bench.py),
so a change of load between rounds cancels.

Cases (--cases, comma-separated):
  torch         PyTorch, NCHW, OMP_WAIT_POLICY=PASSIVE (see below).
  torch_nhwc    PyTorch, channels_last (NHWC) tensors and weights, PASSIVE.
  torch_spin    PyTorch, NCHW, OpenMP's default wait policy (threads spin at barriers).
  tf            TensorFlow as the repo runs it (TF_ENABLE_ONEDNN_OPTS as inherited:
                on this AMD AVX2 CPU TF 2.21 leaves oneDNN OFF unless it is set).
  tf_onednn     TensorFlow with TF_ENABLE_ONEDNN_OPTS=1 in its environment.
  tf_noonednn   TensorFlow with TF_ENABLE_ONEDNN_OPTS=0.
The first case is the denominator of every ratio.

Why PASSIVE: PyTorch's CPU build runs its ops in OpenMP parallel regions whose threads
spin at every barrier. On a shared machine (load above the core count) one of the two
threads is often descheduled and the other spins waiting for it: a PyTorch step was
3x slower than with one thread at load ~5 on these 2 cores. OMP_WAIT_POLICY=PASSIVE
makes waiting threads sleep (its cost on an idle machine was not measured: none was
available). `torch_spin` shows the default.

Threads: every worker gets --threads intra-op threads (torch.set_num_threads; TF
intra_op_parallelism_threads) and --threads inter-op threads
(torch.set_num_interop_threads; TF inter_op_parallelism_threads), and OMP_NUM_THREADS.

The PyTorch venv is separate from the project (PyTorch is no dependency of coseg_tf):

    python3.11 -m venv /work/torch_venv
    /work/torch_venv/bin/pip install torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
    /work/torch_venv/bin/python tools/bench_torch.py \
        [--shapes=0.25x8x161,0.25x8x129] [--rounds=7] [--cases=torch_nhwc,torch,tf,tf_onednn] \
        [--profile] [--tf_python=.venv/bin/python]

--shapes: width x batch x crop, comma-separated. --profile adds, per shape, a profile of
a few steps of each case: time per op type (torch.profiler; TensorFlow's
tf.profiler trace read from its XPlane file), and for TensorFlow per layer group.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 6
VGG16_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
FC_CHANNELS = 1024
OUTPUT_STRIDE = 8
VGG_BGR_MEANS = (103.939, 116.779, 123.68)
TORCH_CASES = ("torch", "torch_nhwc", "torch_spin")
TF_ENV = {"tf": None, "tf_onednn": "1", "tf_noonednn": "0"}


def scaled_channels(channels, width_multiplier):
    """As coseg_tf.model.scaled_channels."""
    return max(1, int(round(channels * width_multiplier)))


def _parse_shapes(text):
    shapes = []
    for item in text.split(","):
        try:
            w, b, c = item.split("x")
            shapes.append((float(w), int(b), int(c)))
        except ValueError:
            raise SystemExit(f"--shapes: {item!r} is not WIDTHxBATCHxCROP, e.g. 0.25x8x161")
    return shapes


# === PyTorch worker ===

def _torch_worker(args):
    import torch
    from torch import nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    torch.manual_seed(0)
    channels_last = args.torch_layout == "nhwc"

    class DeepLabLargeFOV(nn.Module):
        def __init__(self, num_classes, width):
            super().__init__()
            layers, cin = [], 3
            for block, num_convs, channels in VGG16_BLOCKS:
                cout = scaled_channels(channels, width)
                d = 2 if block == 5 else 1
                for _ in range(num_convs):
                    layers += [nn.Conv2d(cin, cout, 3, padding=d, dilation=d),
                               nn.ReLU(inplace=True)]
                    cin = cout
                if block <= 3:
                    layers.append(nn.MaxPool2d(3, stride=2, padding=1))
                else:
                    layers.append(nn.MaxPool2d(3, stride=1, padding=1))
            layers.append(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False))
            fc = scaled_channels(FC_CHANNELS, width)
            layers += [nn.Conv2d(cin, fc, 3, padding=12, dilation=12), nn.ReLU(inplace=True),
                       nn.Dropout(0.5),
                       nn.Conv2d(fc, fc, 1), nn.ReLU(inplace=True), nn.Dropout(0.5)]
            self.features = nn.Sequential(*layers)
            self.fc8 = nn.Conv2d(fc, num_classes, 1)
            nn.init.normal_(self.fc8.weight, std=0.01)
            self.register_buffer("means", torch.tensor(VGG_BGR_MEANS).view(1, 3, 1, 1))

        def forward(self, image, region):
            # image: [B, 3, H, W] RGB 0..255; region: [B, 1, H, W].
            x = image.flip(1) - self.means
            features = self.features(x)
            masked = features * region[:, :, ::OUTPUT_STRIDE, ::OUTPUT_STRIDE]
            return self.fc8(masked)

    net = None
    state = {}

    def setup(width, batch, crop):
        nonlocal net
        net = DeepLabLargeFOV(NUM_CLASSES, width)
        image = torch.rand(batch, 3, crop, crop) * 255
        region = (torch.rand(batch, 1, crop, crop) > 0.3).float()
        h = -(-crop // OUTPUT_STRIDE)
        labels = torch.randint(0, NUM_CLASSES, (batch, h, h))
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
            image = image.contiguous(memory_format=torch.channels_last)
            region = region.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        net.train()

        def step():
            opt.zero_grad(set_to_none=True)
            logits = net(image, region)
            loss = F.cross_entropy(logits, labels)
            loss.backward()
            opt.step()
            return loss.item()
        state["step"] = step

    def profile(steps):
        from torch.profiler import ProfilerActivity, profile as tprofile
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                state["step"]()
        ops = {}
        for evt in prof.key_averages():
            ops[evt.key] = ops.get(evt.key, 0.0) + evt.self_cpu_time_total / 1e6 / steps
        return {"ops": ops}

    _serve(setup, lambda: state["step"](), profile,
           lambda: {"torch": torch.__version__, "layout": args.torch_layout,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")})


# === TensorFlow worker ===

def _tf_worker(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf
    from coseg_tf.model import build_deeplab_largefov

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    state = {}

    def setup(width, batch, crop):
        model = build_deeplab_largefov(num_classes=NUM_CLASSES, width_multiplier=width)
        image = tf.random.uniform([batch, crop, crop, 3], 0, 255)
        region = tf.cast(tf.random.uniform([batch, crop, crop, 1]) > 0.3, tf.float32)
        h = -(-crop // OUTPUT_STRIDE)
        labels = tf.random.uniform([batch, h, h], 0, NUM_CLASSES, dtype=tf.int32)
        optimizer = keras.optimizers.SGD(1e-3, momentum=0.9)
        variables = model.trainable_variables
        optimizer.build(variables)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                outputs = model({"image": image, "human_region": region}, training=True)
                # logits: [B, h, w, C]
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=labels, logits=outputs["logits"]))
            grads = tape.gradient(loss, variables)
            optimizer.apply(grads, variables)
            return loss
        state["step"] = lambda: float(step())

    def profile(steps):
        return profile_tf(state["step"], steps)

    def info():
        try:
            from tensorflow.python.util import _pywrap_util_port  # private switch
            onednn = bool(_pywrap_util_port.IsMklEnabled())
        except (ImportError, AttributeError):
            onednn = None
        return {"tensorflow": tf.__version__, "onednn": onednn}

    _serve(setup, lambda: state["step"](), profile, info)


def profile_tf(step, steps):
    """Op wall time per step of `step()` (a TF step), by op type and by layer group.

    Runs `steps` steps under `tf.profiler` and reads the host trace (XPlane) directly:
    every op event's duration, summed per op type ("Conv2DBackpropFilter", ...) and per
    layer group (`tf_layer_group` of the op's name), divided by `steps`. Ops of two
    inter-op threads overlap, so the sums can exceed the step's wall time.

    Returns:
      {"ops": {op type: seconds}, "groups": {layer group: seconds},
       "group_ops": {layer group: {op type: seconds}}}.
    """
    import glob
    import shutil
    import tempfile

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    logdir = tempfile.mkdtemp(prefix="coseg_tfprof_")
    try:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            step()
        tf.profiler.experimental.stop()
        (path,) = glob.glob(os.path.join(logdir, "plugins/profile/*/*.xplane.pb"))
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    ops, groups, group_ops = {}, {}, {}
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op_name, _, op_type = name.rpartition(":")
                if "::" in name or not op_name or not op_type or not op_type.isidentifier():
                    continue  # not an op: the function, executor and step spans.
                if op_type.endswith("PartitionedCall"):
                    continue  # a call op spans the ops it runs.
                seconds = event.duration_ps / 1e12 / steps
                ops[op_type] = ops.get(op_type, 0.0) + seconds
                group = tf_layer_group(op_name)
                groups[group] = groups.get(group, 0.0) + seconds
                per_group = group_ops.setdefault(group, {})
                per_group[op_type] = per_group.get(op_type, 0.0) + seconds
    return {"ops": ops, "groups": groups, "group_ops": group_ops}


def tf_layer_group(op_name):
    """The layer group of a TF op name (forward and gradient ops alike)."""
    for key in ("block1", "block2", "block3", "block4", "block5", "pool5a", "fc6",
                "drop6", "fc7", "drop7", "masking", "fc8", "preprocess"):
        if f"/{key}" in op_name or op_name.startswith(key):
            return key
    if "SGD" in op_name or "sgd" in op_name or "optimizer" in op_name.lower():
        return "optimizer"
    if "sparse_softmax" in op_name.lower() or "SparseSoftmax" in op_name:
        return "loss"
    return "other"


def _serve(setup, step, profile, info=dict):
    """The worker loop: one JSON command per stdin line, one JSON reply per line."""
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not break the protocol.
    for line in sys.stdin:
        cmd = json.loads(line)
        reply = {}
        if cmd["cmd"] == "setup":
            start = time.perf_counter()
            setup(*cmd["shape"])
            for _ in range(cmd["warmup"]):
                step()  # trace / warm up
            reply = {"setup_s": time.perf_counter() - start, "info": info()}
        elif cmd["cmd"] == "step":
            start = time.perf_counter()
            step()
            reply = {"step_s": time.perf_counter() - start}
        elif cmd["cmd"] == "profile":
            reply = profile(cmd["steps"])
        elif cmd["cmd"] == "quit":
            break
        out.write(json.dumps(reply) + "\n")
        out.flush()


# === Driver ===

class _Worker:
    def __init__(self, case, args):
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TF_CPP_MIN_LOG_LEVEL="2")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
        layout = "nchw"
        if case in TORCH_CASES:
            python = sys.executable if args.torch_python is None else args.torch_python
            layout = "nhwc" if case == "torch_nhwc" else "nchw"
            if case != "torch_spin":
                env["OMP_WAIT_POLICY"] = "PASSIVE"
        elif case in TF_ENV:
            python = args.tf_python
            if TF_ENV[case] is not None:
                env["TF_ENABLE_ONEDNN_OPTS"] = TF_ENV[case]
        else:
            raise SystemExit(f"--cases: unknown case {case!r} "
                             f"({', '.join(TORCH_CASES + tuple(TF_ENV))})")
        worker = "torch" if case in TORCH_CASES else "tf"
        cmd = [python, os.path.abspath(__file__), f"--worker={worker}",
               f"--threads={args.threads}", f"--torch_layout={layout}"]
        self.case = case
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=REPO)

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.case} died (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        try:
            self.ask(cmd="quit")
        except (BrokenPipeError, RuntimeError, json.JSONDecodeError):
            pass
        self.proc.wait(timeout=60)


def op_category(op):
    """A coarse op category shared by both frameworks' op names."""
    o = op.lower()
    if "backprop" in o or "convolution_backward" in o:
        return "conv backward"
    if "conv" in o:
        return "conv forward"
    if o in ("matmul", "batchmatmulv2", "_mklmatmul", "_fusedmatmul") or "mm" == o[-2:]:
        return "matmul (fc6 taps)"
    if "pool" in o:
        return "pool grad" if ("grad" in o or "backward" in o) else "pool"
    if "relu" in o or "threshold" in o:
        return "relu"
    if o in ("pad", "slice", "stridedslice", "stridedslicegrad", "padv2", "mirrorpad",
             "spacetobatchnd", "batchtospacend"):
        return "pad/slice/space-to-batch"
    if "bias" in o:
        return "bias"
    if "dropout" in o or "bernoulli" in o or "random" in o or "greaterequal" in o:
        return "dropout"
    return "other"


def _print_profile(case, prof, step_s):
    ops = sorted(prof["ops"].items(), key=lambda kv: -kv[1])
    total = sum(v for _, v in ops)
    cats = {}
    for op, v in ops:
        cats[op_category(op)] = cats.get(op_category(op), 0.0) + v
    print(f"  {case}: profiled op time {total:.3f} s/step (timed step {step_s:.3f} s)")
    print("    by category: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                        sorted(cats.items(), key=lambda kv: -kv[1])))
    print("    top ops: " + ", ".join(f"{k} {v:.3f}" for k, v in ops[:12]))
    if "groups" in prof:
        print("    by layer group: " + ", ".join(
            f"{k} {v:.3f}" for k, v in sorted(prof["groups"].items(), key=lambda kv: -kv[1])))


def drive(args):
    cases = args.cases.split(",")
    shapes = _parse_shapes(args.shapes)
    load_start = os.getloadavg()
    start_all = time.perf_counter()
    results = []
    workers = []
    try:
        workers = [_Worker(case, args) for case in cases]
        for shape in shapes:
            width, batch, crop = shape
            rounds = args.rounds if width < 1 else min(args.rounds, args.rounds_full)
            print(f"\nshape width {width}, batch {batch}, crop {crop}^2: setting up "
                  f"{', '.join(cases)} ...", flush=True)
            for w in workers:  # one at a time: set-up compiles and warms up.
                info = w.ask(cmd="setup", shape=list(shape), warmup=2 if width < 1 else 1)
                if shape == shapes[0]:
                    print(f"  {w.case}: {info['info']}", flush=True)
            runs = {c: [] for c in cases}
            for r in range(rounds):
                order = workers if r % 2 == 0 else workers[::-1]
                for w in order:
                    time.sleep(args.pause)  # let the previous worker's threads go idle
                    runs[w.case].append(w.ask(cmd="step")["step_s"])
                print(f"  round {r + 1}: " + ", ".join(f"{c} {runs[c][-1]:.3f}"
                                                     for c in cases), flush=True)
            base = cases[0]
            row = {"shape": shape, "runs": runs,
                   "median": {c: statistics.median(t) for c, t in runs.items()},
                   "ratio": {c: statistics.median(x / y for x, y in
                                                  zip(runs[c], runs[base]))
                             for c in cases[1:]}}
            if args.profile:
                row["profile"] = {}
                for w in workers:
                    time.sleep(args.pause)
                    row["profile"][w.case] = w.ask(cmd="profile", steps=args.profile_steps)
                    _print_profile(w.case, row["profile"][w.case], row["median"][w.case])
            results.append(row)
    finally:
        for w in workers:
            w.close()
    load_end = os.getloadavg()
    base = cases[0]
    print(f"\nthreads: {args.threads} intra-op + {args.threads} inter-op in every worker; "
          "torch cases OMP_WAIT_POLICY=PASSIVE except torch_spin")
    head = f"{'width':>5} {'batch':>5} {'crop':>5} {'rounds':>6}" + "".join(
        f" {c + ' s':>14}" for c in cases) + "".join(
        f" {c + '/' + base:>18}" for c in cases[1:])
    print(head)
    for row in results:
        width, batch, crop = row["shape"]
        print(f"{width:>5} {batch:>5} {crop:>5} {len(row['runs'][base]):>6}" + "".join(
            f" {row['median'][c]:>14.3f}" for c in cases) + "".join(
            f" {row['ratio'][c]:>18.2f}" for c in cases[1:]))
    print(f"load average {[round(v, 2) for v in load_start]} -> "
          f"{[round(v, 2) for v in load_end]} on {os.cpu_count()} cores; "
          f"{time.perf_counter() - start_all:.0f} s")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"cases": cases, "threads": args.threads, "results": results,
                       "load_average_start": load_start, "load_average_end": load_end},
                      f, indent=2)
            f.write("\n")
        print(f"wrote {args.output}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="0.25x8x161,0.25x8x129",
                        help="WIDTHxBATCHxCROP, comma-separated")
    parser.add_argument("--cases", default="torch_nhwc,torch,tf,tf_onednn",
                        help="comma-separated: torch, tf, tf_onednn, tf_noonednn; the "
                             "first is the denominator of the ratios")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per shape")
    parser.add_argument("--rounds_full", type=int, default=4,
                        help="at most this many rounds for width >= 1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--torch_layout", choices=("nchw", "nhwc"), default="nchw",
                        help=argparse.SUPPRESS)  # set per case (torch_nhwc)
    parser.add_argument("--pause", type=float, default=0.2,
                        help="seconds of idle between two timed steps")
    parser.add_argument("--profile", action="store_true",
                        help="also profile each case (op types; TF layer groups)")
    parser.add_argument("--profile_steps", type=int, default=2)
    parser.add_argument("--tf_python", default=os.path.join(REPO, ".venv", "bin", "python"))
    parser.add_argument("--torch_python", default=None,
                        help="interpreter with torch (default: this one)")
    parser.add_argument("--output", default=None, help="optional JSON of every run")
    parser.add_argument("--worker", choices=("torch", "tf"), default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("rounds", "rounds_full", "threads", "profile_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.worker == "torch":
        _torch_worker(args)
    elif args.worker == "tf":
        _tf_worker(args)
    else:
        if not os.access(args.tf_python, os.X_OK):
            parser.error(f"--tf_python={args.tf_python!r} is not an executable")
        drive(args)


if __name__ == "__main__":
    main()
