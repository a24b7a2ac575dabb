"""The command-line programs: train, eval, export, predict; `run_program` for the tools.

The root scripts (`python train.py ...`) and the console scripts of an installed
package (`coseg-train ...`, setup.cfg) run the same function here. Each defines its own
flags when it starts (the four share names such as --model_dir, so they cannot all be
defined in one process), parses them with `flags.flagfiles.parse` (recipes given to
--flagfile are read as UTF-8 with or without a BOM), turns them into the plain config
of its library once, and runs it. TensorFlow is imported after the flags are parsed.

`--help` (or `-h`, `--helpshort`) prints the program's description and its own flags
and exits 0; `--helpfull` adds absl's and TensorFlow's.

Exit codes: 0 done; 1 a flag absl cannot parse (an unknown flag, a value outside an
enum's choices, a malformed number: absl's "FATAL Flags parsing error"); 2 a refused
flag, input or record (`errors.ConfigError`); train also 3 for a NaN loss.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from flags import flagfiles  # noqa: E402


_HELP = ("--help", "-h", "-?", "--helpshort")


def _prog(default="coseg"):
    """The program's name as the user invoked it (train.py, coseg-train, ...)."""
    return os.path.basename(sys.argv[0]) or default


def run_program(main, flags_module, name, description=None):
    """app.run(main) with flagfiles.parse; `--help` prints a description and the flags
    `flags_module` defined, to stdout, and exits 0.

    Args:
      main: absl main, `main(argv) -> exit code or None`.
      flags_module: the module object whose flags `--help` lists.
      name: the program's name in the pointer to `--helpfull` when `sys.argv[0]` has none.
      description: the text above the flags; default `flags_module.USAGE`.

    absl's own --help lists the key flags of the `__main__` module only (none when the
    flags live in flags/, or when a console script is `__main__`) and exits 1.
    """
    if any(a in _HELP for a in sys.argv[1:]):
        text = description if description is not None else flags_module.USAGE
        print(text.strip() + "\n")
        print(flags.FLAGS.module_help(flags_module).strip())
        print(f"\nAll flags, absl's and TensorFlow's included: {_prog(name)} --helpfull")
        sys.exit(0)
    app.run(main, flags_parser=flagfiles.parse)


def _no_arguments(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")


def _train_main(argv):
    _no_arguments(argv)
    from coseg_tf import train_lib
    from flags import train as train_flags

    config = train_flags.config_from_flags(flags.FLAGS)
    try:
        train_lib.run_training(config)
    except KeyboardInterrupt:
        print(f"\n{_prog()}: interrupted. The same command resumes {config.model_dir} "
              "from its last backup (one every --checkpoint_every steps).", file=sys.stderr)
        return 130
    except train_lib.ConfigError as e:
        print(f"{_prog()}: error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"{_prog()}: error: {e}", file=sys.stderr)
        return 3
    return 0


def _eval_main(argv):
    _no_arguments(argv)
    from coseg_tf import evaluation
    from flags import eval as eval_flags

    config = eval_flags.config_from_flags(flags.FLAGS)
    try:
        metrics = evaluation.evaluate(config)
    except evaluation.ConfigError as e:
        print(f"{_prog()}: error: {e}", file=sys.stderr)
        return 2
    print(evaluation.format_report(metrics))
    print(f"wrote {os.path.join(metrics['output_dir'], evaluation.METRICS_FILE)}")
    return 0


def _export_main(argv):
    _no_arguments(argv)
    from coseg_tf import export as export_lib
    from flags import export as export_flags

    config = export_flags.config_from_flags(flags.FLAGS)
    try:
        result = export_lib.run_export(config)
    except export_lib.ConfigError as e:
        print(f"{_prog()}: error: {e}", file=sys.stderr)
        return 2
    print(export_lib.describe_export(result))
    return 0


def _predict_main(argv):
    _no_arguments(argv)
    from coseg_tf import predict as predict_lib
    from flags import predict as predict_flags

    config = predict_flags.config_from_flags(flags.FLAGS)
    try:
        summary = predict_lib.predict(config)
    except predict_lib.ConfigError as e:
        print(f"{_prog()}: error: {e}", file=sys.stderr)
        return 2
    print(predict_lib.describe(summary), file=sys.stderr)
    return 0


def train():
    """train.py / coseg-train: flags of flags/train.py."""
    from flags import train as train_flags

    train_flags.define_train_flags()
    run_program(_train_main, train_flags, "train.py")


def evaluate():
    """eval.py / coseg-eval: flags of flags/eval.py."""
    from flags import eval as eval_flags

    eval_flags.define_eval_flags()
    run_program(_eval_main, eval_flags, "eval.py")


def export():
    """export.py / coseg-export: flags of flags/export.py."""
    from flags import export as export_flags

    export_flags.define_export_flags()
    run_program(_export_main, export_flags, "export.py")


def predict():
    """predict.py / coseg-predict: flags of flags/predict.py."""
    from flags import predict as predict_flags

    predict_flags.define_predict_flags()
    run_program(_predict_main, predict_flags, "predict.py")
