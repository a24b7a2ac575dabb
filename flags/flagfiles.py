"""`--flagfile` (recipes/*.flags) read as every other text file of the project.

absl opens a flag file with the platform's default encoding and keeps a byte-order
mark: a recipe saved by a Windows editor then starts with "\\ufeff# comment", which
absl takes for a positional argument ("unexpected arguments"). `parse` expands every
`--flagfile` with `pipelines.textfiles` (UTF-8 with or without a byte-order mark, LF or
CRLF) and the rules of absl's own expansion (`FlagValues.read_flags_from_files`): the
file's lines go where the directive stood (later flags win), blank lines and lines
starting with # or // are skipped, a nested --flagfile is expanded in place, and a
file cannot include itself. Then absl parses the result as usual.

    app.run(main, flags_parser=flagfiles.parse)
"""

from __future__ import annotations

import os
import sys

from absl import app

from pipelines import textfiles

_DIRECTIVES = ("--flagfile", "-flagfile")


def _file_lines(path, stack):
    if path in stack:
        raise ValueError(f"flagfile {path} includes itself (through {' -> '.join(stack)})")
    try:
        lines = textfiles.read_lines(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read flagfile {path}: {e}") from None
    out = []
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "//")):
            continue
        out += expand([stripped], stack + [path])
    return out


def expand(argv, stack=None):
    """`argv` with every --flagfile directive replaced by the flags of its file.

    Args:
      argv: arguments (without the program name), e.g. sys.argv[1:].

    Raises:
      ValueError naming the flag file that is missing, unreadable, not UTF-8, or that
      includes itself.
    """
    stack = stack or []
    out = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--":  # absl stops at "--" too
            out += [arg] + rest
            break
        if arg in _DIRECTIVES:
            if not rest:
                raise ValueError("--flagfile with no argument")
            path = rest.pop(0)
        elif arg.startswith(tuple(d + "=" for d in _DIRECTIVES)):
            path = arg.split("=", 1)[1].strip()
        else:
            out.append(arg)
            continue
        out += _file_lines(os.path.expanduser(path), stack)
    return out


def parse(argv):
    """absl's `parse_flags_with_usage` after `expand`: the `flags_parser` of app.run."""
    try:
        expanded = [argv[0]] + expand(argv[1:])
    except ValueError as e:
        sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
        sys.exit(1)
    return app.parse_flags_with_usage(expanded)
