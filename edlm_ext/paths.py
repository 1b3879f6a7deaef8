"""Where edlm_ext's files are: the shipped assets (inside the package, so they come with
an installed wheel) and, in a source checkout only, the corpus and the benchmarks.

``train`` needs the Austen corpus and ``bench`` the scripts of python/bench, which live
beside the package in the repository and are not installed: from an installed wheel
both say so (:func:`source_checkout`) instead of failing on a missing path.
"""
from __future__ import annotations

from pathlib import Path

from .errors import InputError

PACKAGE = Path(__file__).resolve().parent
#: The shipped models (denoiser/, ar/, nce/) and the Austen tokenizer.
ASSETS = PACKAGE / "assets"
#: The repository root when this edlm_ext runs from a source checkout, else None.
SOURCE = PACKAGE.parent if (PACKAGE.parent / "setup.py").is_file() and (PACKAGE.parent / "csrc").is_dir() else None


def source_checkout(what: str, relative: str) -> Path:
    """The path `relative` of the source checkout, for `what`; an InputError when this
    edlm_ext is an installed package (no source checkout around it)."""
    if SOURCE is None:
        raise InputError(f"{what} needs a source checkout of edlm_ext ({relative} is not installed with the "
                         f"package at {PACKAGE}): clone the repository and run it from there")
    return SOURCE / relative


def corpus_dir() -> Path:
    """data/austen of the source checkout (train / valid text, prepared by python/data/prepare_austen.py)."""
    return source_checkout("training (the Austen corpus)", "data/austen")


def bench_dir() -> Path:
    """python/bench of the source checkout (the microbenchmarks)."""
    return source_checkout("bench (the microbenchmarks)", "python/bench")
