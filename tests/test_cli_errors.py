"""No traceback for a user's mistake (issue 11, item 4): every subcommand reports bad
arguments and bad files with ONE line on stderr and a non-zero exit status — 1 for
our checks (SystemExit with the message), 2 for argparse's — before any work starts.
Missing shipped weights are an error naming the file, never a silent switch to tiny models."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from edlm_ext import cli, data, paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_MAX = 281470681808894  # (2^64 - 1) // 65537 - 1: seed * 65537 + rank seeds the sampler
TINY = ["--models", "tiny", "--num-samples", "1", "--seq-len", "4", "--steps", "2"]


def _fails(argv, capsys, match: str, code: int = 1) -> str:
    """main(argv) exits non-zero with one line matching `match`; returns that line."""
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err
    if code == 1:  # our errors: SystemExit("PROG: error: ...") -> status 1, printed by the interpreter
        assert isinstance(info.value.code, str), info.value.code
        line = info.value.code
        assert err.strip() == ""
    else:  # argparse: printed to stderr, status 2
        assert info.value.code == code
        line = err.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert " error: " in line and re.search(match, line), line
    return line


def _cuda_case():
    if torch.cuda.is_available():
        return ["--device", "cuda:99"], r"--device cuda:99: only \d+ CUDA device"
    return ["--device", "cuda"], r"--device cuda: no CUDA device is available"


SAMPLE_FLAGS = [
    (["--temperature", "nan"], r"argument --temperature: temperature must be 0 \(greedy\) or in \[1e-30, 1e\+30\]", 2),
    (["--temperature", "inf"], r"argument --temperature: temperature must be 0", 2),
    (["--temperature", "-1"], r"argument --temperature: temperature must be 0", 2),
    (["--temperature", "1e-40"], r"argument --temperature: .*got 1e-40", 2),
    (["--temperature", "warm"], r"argument --temperature: not a number: 'warm'", 2),
    (["--seed", "-1"], rf"argument --seed: must be an int in \[0, {SEED_MAX}\], got -1", 2),
    (["--seed", str(2**64)], rf"argument --seed: must be an int in \[0, {SEED_MAX}\]", 2),
    (["--batch-size", "0"], r"argument --batch-size: must be an int >= 1, got 0", 2),
    (["--steps", "0"], r"argument --steps: must be an int >= 1, got 0", 2),
    (["--k", "0"], r"argument --k: must be an int >= 1", 2),
    (["--window", "nan"], r"argument --window: must be a finite number", 2),
    (["--window", "1.5"], r"argument --window: must be <= 1", 2),
    (["--num-samples", "x"], r"argument --num-samples: not an int: 'x'", 2),
    (["--vocab-size", str(2**31)], r"argument --vocab-size: must be an int in \[2, 1048576\]", 2),
    (["--device", "xyz"], r"--device: unknown device 'xyz' \(use cpu, cuda or cuda:N\)", 1),
    (["--device", "mps"], r"--device mps: edlm_ext runs on cpu or cuda, not mps", 1),
    (_cuda_case()[0], _cuda_case()[1], 1),
    (["--method", "edlm-nce"], r"--method edlm-nce needs --models shipped", 1),
    (["--prompt", "Emma"], r"--prompt needs --models shipped", 1),
]


@pytest.mark.parametrize("flags,match,code", SAMPLE_FLAGS, ids=[" ".join(f[0]) for f in SAMPLE_FLAGS])
def test_sample_bad_flags(flags, match, code, capsys):
    _fails(["sample", *TINY, *flags], capsys, match, code)


@pytest.mark.parametrize("case", ["directory", "file-as-parent", "unwritable"])
def test_sample_bad_output_fails_before_sampling(case, tmp_path, capsys, monkeypatch):
    (tmp_path / "f").write_text("x")
    path, match = {"directory": (tmp_path, "is a directory"), "file-as-parent": (tmp_path / "f" / "o.jsonl",
                                                                                 "is not a directory"),
                   "unwritable": ("/sys/o.jsonl", "cannot write in /sys")}[case]
    monkeypatch.setattr("edlm_ext.sampler.sample", lambda *a, **k: pytest.fail("sampled before checking --output"))
    _fails(["sample", *TINY, "--output", str(path)], capsys, f"--output .*{match}")


def test_sample_seq_len_above_the_shipped_models_maximum(capsys):
    _fails(["sample", "--seq-len", "300"], capsys, r"--seq-len 300 exceeds the shipped denoiser model's maximum "
                                                   r"length 256")


def _assets(tmp_path, monkeypatch, **broken):
    """A copy of the shipped assets (symlinks) in which `broken` files are replaced:
    {"denoiser/model.safetensors": bytes or None (removed)}; edlm_ext.paths and data point at it."""
    assets = tmp_path / "assets"
    for m in ("denoiser", "ar", "nce"):
        (assets / m).mkdir(parents=True)
        for f in ("config.json", "model.safetensors"):
            os.symlink(os.path.join(paths.ASSETS, m, f), assets / m / f)
    os.symlink(data.TOKENIZER_FILE, assets / data.TOKENIZER_FILE.name)
    for rel, content in broken.items():
        rel = rel.replace("__", "/")
        (assets / rel).unlink()
        if content is not None:
            (assets / rel).write_bytes(content)
    monkeypatch.setattr(paths, "ASSETS", assets)
    monkeypatch.setattr(data, "TOKENIZER_FILE", assets / data.TOKENIZER_FILE.name)
    return assets


def _truncated(name: str) -> bytes:
    with open(os.path.join(paths.ASSETS, name), "rb") as f:
        return f.read(5000)


BROKEN = [
    ({"denoiser__model.safetensors": None}, ["sample"],
     r"shipped model file .*denoiser/model\.safetensors is missing: it comes with edlm_ext .*--models tiny"),
    ({"ar__config.json": None}, ["sample", "--method", "edlm-ar"], r"shipped model file .*ar/config\.json is missing"),
    ({"nce__model.safetensors": None}, ["sample", "--method", "edlm-nce"], r"nce/model\.safetensors is missing"),
    ({"denoiser__model.safetensors": "truncated"}, ["sample"],
     r"denoiser/model\.safetensors is truncated or not a safetensors file"),
    ({"denoiser__model.safetensors": b"\x00garbage" * 100}, ["sample"], r"is truncated or not a safetensors file"),
    ({"denoiser__config.json": b"{not json"}, ["sample"], r"denoiser/config\.json is corrupt \(JSONDecodeError"),
    ({"denoiser__config.json": b'{"kind": "denoiser"}'}, ["sample"], r"denoiser/config\.json is corrupt \(KeyError"),
    ({"denoiser__config.json": b'{"kind": "denoiser", "mask_id": 1, "n_heads": 3}'}, ["sample"],
     r"config\.json: n_heads = 3 \(--heads\) does not divide d_model = 256"),
    ({"austen-bpe-8k.json": b'{"version": "1.0", "truncat'}, ["sample"],
     r"tokenizer .*austen-bpe-8k\.json is corrupt or not a tokenizers JSON file"),
    ({"austen-bpe-8k.json": None}, ["sample"], r"shipped model file .*austen-bpe-8k\.json is missing"),
    ({"ar__model.safetensors": None}, ["eval", "x.jsonl"], r"ar/model\.safetensors is missing"),
]


@pytest.mark.parametrize("broken,argv,match", BROKEN, ids=[f"{a[0]}:{next(iter(b))}" for b, a, _ in BROKEN])
def test_missing_truncated_or_corrupt_shipped_files(broken, argv, match, tmp_path, capsys, monkeypatch):
    broken = {k: (_truncated(k.replace("__", "/")) if v == "truncated" else v) for k, v in broken.items()}
    _assets(tmp_path, monkeypatch, **broken)
    _fails([*argv, "--seq-len", "8", "--steps", "2", "--num-samples", "1"] if argv[0] == "sample" else argv,
           capsys, match)


def test_missing_shipped_weights_never_switch_to_tiny_models(tmp_path, capsys, monkeypatch):
    """Without --models the default is the shipped models; tiny ones only when asked."""
    _assets(tmp_path, monkeypatch, **{"denoiser__model.safetensors": None})
    _fails(["sample", "--seq-len", "4", "--steps", "2", "--num-samples", "1"], capsys, "is missing")
    assert cli.main(["sample", *TINY]) == 0  # explicitly tiny: fine
    assert "models=tiny" in capsys.readouterr().out


def _jsonl(tmp_path, lines) -> str:
    p = tmp_path / "s.jsonl"
    p.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return str(p)


EVAL_FILES = [
    ([], r"s\.jsonl: no samples \(the file is empty\)"),
    ([{"tokens": [5, 6, 7]}, {"tokens": [5, 6]}], r"s\.jsonl:2: 2 tokens, but the first sample has 3"),
    ([{"tokens": [5, -1, 7]}], r"s\.jsonl:1: token id -1 outside the Austen vocabulary \[0, 8192\)"),
    ([{"tokens": [5, 99999]}], r"token id 99999 outside the Austen vocabulary.*--models tiny"),
    ([{"index": 0, "text": "a"}], r's\.jsonl:1: want a JSON object with a "tokens" list .*got keys \[\'index\', \'text\'\]'),
    (["{oops"], r"s\.jsonl:1: not JSON"),
    ([[1, 2, 3]], r"s\.jsonl:1: want a JSON object .*got list"),
    ([{"tokens": [1.5, 2]}], r's\.jsonl:1: "tokens" must be a non-empty list of ints'),
    ([{"tokens": []}], r'"tokens" must be a non-empty list of ints'),
    ([{"tokens": [5] * 300}], r"s\.jsonl: samples of 300 tokens exceed the AR model's maximum length 256"),
]


@pytest.mark.parametrize("lines,match", EVAL_FILES, ids=[m.split(": ", 1)[-1][:30] for _, m in EVAL_FILES])
def test_eval_bad_sample_files(lines, match, tmp_path, capsys):
    _fails(["eval", _jsonl(tmp_path, lines)], capsys, match)


def test_eval_missing_and_binary_files(tmp_path, capsys):
    _fails(["eval", str(tmp_path / "none.jsonl")], capsys, r"none\.jsonl: no such file")
    _fails(["eval", str(tmp_path)], capsys, r"is not a file")
    (tmp_path / "b.jsonl").write_bytes(b"\xff\xfe\x00" * 10)
    _fails(["eval", str(tmp_path / "b.jsonl")], capsys, r"b\.jsonl: not a UTF-8 text file")


TRAIN = [
    (["--eval-every", "0"], r"eval_every \(--eval-every\) must be an int >= 1, got 0"),
    (["--batch-size", "0"], r"batch_size \(--batch-size\) must be an int >= 1, got 0"),
    (["--heads", "3"], r"n_heads = 3 \(--heads\) does not divide d_model = 256 \(--d-model\)"),
    (["--d-model", "12", "--heads", "4"], r"head width d_model / n_heads = 3 must be even"),
    (["--lr", "nan"], r"lr \(--lr\) must be a finite number > 0, got nan"),
    (["--lr", "0"], r"lr \(--lr\) must be a finite number > 0"),
    (["--minutes", "inf"], r"minutes \(--minutes\) must be a finite number"),
    (["--weight-decay", "-0.1"], r"weight_decay \(--weight-decay\) must be a finite number >= 0, got -0.1"),
    (["--seq-len", "1"], r"seq_len \(--seq-len\) must be an int >= 2 \(an AR model predicts"),
    (["--steps", "0"], r"steps \(--steps\) must be an int >= 1"),
    (["--seed", "-3"], r"seed \(--seed\) must be an int >= 0, got -3"),
    (["--tokenizer", "gpt5"], r"tokenizer must be one of \('austen-bpe-8k', 'gpt2'\)"),
]


@pytest.mark.parametrize("flags,match", TRAIN, ids=[" ".join(f) for f, _ in TRAIN])
def test_train_bad_settings_fail_before_any_work(flags, match, tmp_path, capsys):
    _fails(["train", "ar", "--out", str(tmp_path / "run"), *flags], capsys, match)
    assert not (tmp_path / "run").exists()  # nothing created


def test_train_bad_paths(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    _fails(["train", "ar", "--out", str(tmp_path / "f")], capsys, r"--out .*f exists and is not a directory")
    _fails(["train", "ar", "--out", "/sys/edlm_run"], capsys, r"--out /sys/edlm_run: cannot write in /sys")
    _fails(["train", "nce", "--out", str(tmp_path / "r"), "--denoiser", str(tmp_path / "none"), "--steps", "1"],
           capsys, r"none: no such model folder")
    _fails(["train", "ar"], capsys, r"the following arguments are required: --out", code=2)


def test_bench_unknown_benchmark(capsys):
    _fails(["bench", "nonsense"], capsys, r"argument which: invalid choice: 'nonsense'", code=2)


def test_train_device(tmp_path, capsys):
    flags, match = _cuda_case()
    _fails(["train", "ar", "--out", str(tmp_path / "run"), *flags], capsys, match)
    _fails(["train", "ar", "--out", str(tmp_path / "run"), "--device", "tpu"], capsys,
           r"--device: unknown device 'tpu'|edlm_ext runs on cpu or cuda")
    assert not (tmp_path / "run").exists()


def test_train_and_bench_from_an_installed_package_say_they_need_a_source_checkout(tmp_path, capsys, monkeypatch):
    """An installed wheel has no corpus and no python/bench beside the package: a
    one-line error before any work, not a missing-file traceback."""
    monkeypatch.setattr(paths, "SOURCE", None)
    _fails(["train", "ar", "--out", str(tmp_path / "run")], capsys,
           r"training \(the Austen corpus\) needs a source checkout of edlm_ext \(data/austen is not installed")
    assert not (tmp_path / "run").exists()
    _fails(["bench", "sampling"], capsys, r"bench \(the microbenchmarks\) needs a source checkout of edlm_ext")
    monkeypatch.undo()  # power: from this source checkout both find their files
    assert (paths.corpus_dir() / "train.txt").is_file() and (paths.bench_dir() / "bench_sampling.py").is_file()


@pytest.mark.parametrize("argv,status,match", [
    (["sample", "--models", "tiny", "--temperature", "nan"], 2, "argument --temperature"),
    (["eval", "/nonexistent/s.jsonl"], 1, r"/nonexistent/s\.jsonl: no such file"),
    (["train", "ar", "--out", "/tmp/unused", "--heads", "5"], 1, r"n_heads = 5 \(--heads\) does not divide"),
])
def test_the_process_exits_with_one_line_and_no_traceback(argv, status, match):
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-m", "edlm_ext", *argv], capture_output=True, text=True, env=env,
                          timeout=120)
    lines = [x for x in proc.stderr.splitlines() if x.strip() and "Warning" not in x and "warn(" not in x]
    assert proc.returncode == status and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(match, lines[0])


def test_a_nan_loss_stops_training_without_writing_a_model(tmp_path, capsys):
    """A learning rate that blows the weights up: the first non-finite loss stops the
    run with one line; no NaN model.safetensors is written."""
    out = tmp_path / "run"
    line = _fails(["train", "ar", "--out", str(out), "--lr", "1e30", "--d-model", "16", "--layers", "1", "--heads",
                   "2", "--seq-len", "8", "--batch-size", "2", "--steps", "6", "--eval-every", "100", "--warmup", "0",
                   "--threads", "1", "--no-progress"], capsys,
                  r"the (training loss|gradient norm) is (nan|inf|-inf) at step \d: training stopped before a "
                  r"non-finite update \(nothing was saved\)")
    assert "lower --lr" in line
    assert not (out / "model.safetensors").exists() and not (out / "checkpoint.safetensors").exists()
