"""The errors edlm_ext raises for a user's mistake or a broken environment, which
the command line (edlm_ext.cli) reports as one line, without a traceback, and a
non-zero exit status. Anything else that escapes is a bug and keeps its traceback.

* :class:`InputError` (a ``ValueError``): a bad argument, a missing, truncated or
  corrupt file (model, config, tokenizer, checkpoint, samples), an output path that
  cannot be written.
* :class:`CheckpointError`: a training checkpoint that is corrupt or belongs to
  another run (kind, model config, tokenizer); resume refuses it.
* :class:`OutputError`: writing an output failed (disk full, file size limit, I/O
  error); the file it was to replace is unchanged.
* :class:`TrainingDiverged`: a NaN or infinite loss or gradient stopped training.
* :class:`TrainingInterrupted`: SIGINT / SIGTERM stopped training after a checkpoint.
"""
from __future__ import annotations


class EdlmError(Exception):
    """Base of the errors the command line prints as one line."""


class InputError(EdlmError, ValueError):
    """A bad argument or a bad, missing or unwritable file (a user's mistake)."""


class CheckpointError(InputError):
    """A checkpoint that cannot be resumed: corrupt, truncated, or of another run."""


class OutputError(EdlmError, OSError):
    """Writing an output file failed; the previous file at that path is unchanged."""


class TrainingDiverged(EdlmError, RuntimeError):
    """A non-finite loss or gradient norm: training stops before it can write a NaN model."""


class TrainingInterrupted(EdlmError):
    """Training stopped on SIGINT / SIGTERM after saving a checkpoint (``signum``, ``step``)."""

    def __init__(self, message: str, signum: int, step: int):
        super().__init__(message)
        self.signum, self.step = signum, step
