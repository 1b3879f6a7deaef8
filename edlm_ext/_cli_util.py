"""Command-line plumbing shared by ``python -m edlm_ext`` and ``python -m edlm_ext.train``:
an argparse parser whose errors are one line, argument types that check ranges,
and :func:`run` that turns edlm_ext's user-facing errors into one line on stderr and
a non-zero exit status (1; argparse errors 2; SIGINT 130, SIGTERM 143)."""
from __future__ import annotations

import argparse
import math
import sys

from .errors import EdlmError, TrainingInterrupted


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with errors as ONE line ("PROG: error: MESSAGE (see PROG --help)"), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_at_least(least: int, most: int | None = None):
    """An argparse type: an int in [least, most]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an int: {text!r}") from None
        if value < least or (most is not None and value > most):
            bound = f">= {least}" if most is None else f"in [{least}, {most}]"
            raise argparse.ArgumentTypeError(f"must be an int {bound}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


def finite_float(least: float | None = None, *, positive: bool = False, most: float | None = None):
    """An argparse type: a finite float (>= least, > 0 when positive, <= most)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if positive and value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        if least is not None and value < least:
            raise argparse.ArgumentTypeError(f"must be >= {least:g}, got {text}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be <= {most:g}, got {text}")
        return value
    parse.__name__ = "float"
    return parse


def run(prog: str, fn, *args) -> int:
    """fn(*args) with edlm_ext's user-facing errors reported as one line: raises
    SystemExit("PROG: error: ...") (status 1), or SystemExit(128 + signal) after an
    interrupted training run has saved its checkpoint."""
    try:
        return fn(*args)
    except TrainingInterrupted as e:
        print(f"{prog}: {e}", file=sys.stderr)
        raise SystemExit(128 + e.signum) from None
    except EdlmError as e:
        raise SystemExit(f"{prog}: error: " + " ".join(str(e).split())) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
