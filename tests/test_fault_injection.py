"""Injected faults in training (issue 11, item 3): a child process training a tiny AR
model is SIGKILLed at many points — inside the checkpoint write (half-written temporary
file; complete but not renamed; renamed but the directory not fsynced), between
checkpoints, inside the final model write — stopped by SIGTERM and SIGINT, and has
writes cut short by a full disk (simulated ENOSPC) and by RLIMIT_FSIZE. After every
fault the output folder holds only whole files (plus at most the dead writer's
temporary file), the checkpoint is consistent (its digest, step, history and
commands agree), and resuming continues from it; the run finally ends with exactly
the weights, optimizer state and history of a run that was never interrupted (same
seed, steps and threads: a resume restores both random streams).

The kill points are deterministic: test hooks (EDLM_TEST_WRITE_FAULT in
edlm_ext.atomic, EDLM_TEST_STEP_FAULT in edlm_ext.train) write a marker file at the
chosen point and wait there for the test's signal."""
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edlm_ext import checkpoint
from edlm_ext.models import load_model

ROOT = Path(__file__).resolve().parents[1]
STEPS, EVAL_EVERY = 8, 2
TINY = ["--d-model", "32", "--layers", "1", "--heads", "2", "--seq-len", "16", "--batch-size", "4",
        "--eval-every", str(EVAL_EVERY), "--eval-batches", "1", "--warmup", "2", "--threads", "1", "--no-progress",
        "--steps", str(STEPS)]


def _start(out: Path, env: dict | None = None, preexec=None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edlm_ext", "train", "ar", "--out", str(out), *TINY]
    full_env = {k: v for k, v in os.environ.items() if k not in ("EDLM_TEST_WRITE_FAULT", "EDLM_TEST_STEP_FAULT")}
    full_env.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})})
    return subprocess.Popen(cmd, cwd=out.parent, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=preexec)


def _wait_for(proc: subprocess.Popen, marker: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the child ended (status {proc.returncode}) before reaching {marker.name}: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"the child never reached {marker.name}")
        time.sleep(0.02)


def _write_fault(out: Path, point: str, name: str, n: int) -> Path:
    """Run until the n-th write of `name` reaches `point`, SIGKILL there; returns the marker."""
    marker = out.parent / f"marker-{point}-{name}-{n}-{time.monotonic_ns()}"
    proc = _start(out, {"EDLM_TEST_WRITE_FAULT": f"{point}:{name}:{n}:{marker}"})
    _wait_for(proc, marker)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return marker


def _step_fault(out: Path, step: int, sig: int) -> subprocess.CompletedProcess:
    """Run until after optimizer step `step`, then send sig there."""
    marker = out.parent / f"marker-step-{step}-{time.monotonic_ns()}"
    proc = _start(out, {"EDLM_TEST_STEP_FAULT": f"{step}:{marker}"})
    _wait_for(proc, marker)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _run(out: Path, env: dict | None = None, preexec=None) -> subprocess.CompletedProcess:
    proc = _start(out, env, preexec)
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _load(out: Path) -> checkpoint.Checkpoint:
    """The checkpoint, verified (digest, format) against its own identity."""
    from safetensors import safe_open

    with safe_open(str(out / checkpoint.FILE), framework="pt") as f:
        ident = json.loads(f.metadata()["identity"])
    return checkpoint.load(out / checkpoint.FILE, ident)


def _temporaries(out: Path) -> list[Path]:
    return sorted(out.glob(".*.tmp*"))


def _check_consistent(out: Path, step: int, from_steps: list[int]) -> None:
    """Only whole files besides temporaries; the checkpoint at `step` with the history of
    every validation up to it and the commands of the runs that trained it."""
    ck = _load(out)
    assert ck.state["step"] == step
    assert [h["step"] for h in ck.state["history"]] == list(range(EVAL_EVERY, step + 1, EVAL_EVERY))
    assert [c["from_step"] for c in ck.state["commands"]] == from_steps
    for f in out.iterdir():
        if f.name.endswith(".tmp") or ".tmp." in f.name or f.name == checkpoint.FILE:
            continue
        if f.name == "model.safetensors":
            load_model(out)  # with config.json: whole and matching
        elif f.suffix == ".json":
            json.loads(f.read_text())


def _same_run(out: Path, ref: Path, from_steps: list[int]) -> None:
    """out ended exactly where the uninterrupted run ref did."""
    a, b = _load(out), _load(ref)
    assert a.state["step"] == b.state["step"] == STEPS
    for name in b.model:
        assert torch.equal(a.model[name], b.model[name]), name
    for idx, entry in b.optimizer["state"].items():
        for key, value in entry.items():
            assert torch.equal(a.optimizer["state"][idx][key], value), (idx, key)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in b.state["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in a.state["history"]] == strip
    ma, mb = load_model(out), load_model(ref)
    for (na, ta), (nb, tb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert na == nb and torch.equal(ta, tb)
    rec = json.loads((out / "record.json").read_text())
    assert rec["steps"] == STEPS and [c["from_step"] for c in rec["commands"]] == from_steps
    assert _temporaries(out) == []


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The run that was never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = _run(out)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_kills_and_signals_at_every_point_lose_nothing(tmp_path, reference):
    out = tmp_path / "run"
    # 1. SIGKILL half-way through writing the checkpoint of step 4: the step-2 one stays.
    _write_fault(out, "partial", checkpoint.FILE, 2)
    _check_consistent(out, 2, [0])
    early = _load(out).model
    assert any(not torch.equal(early[n], v) for n, v in _load(reference).model.items())  # the final check has power
    (tmp,) = _temporaries(out)
    assert 0 < tmp.stat().st_size < (out / checkpoint.FILE).stat().st_size  # the half-written file, not the target
    # 2. SIGTERM after step 3: saves a checkpoint at step 3 (between validations), exits 143.
    done = _step_fault(out, 3, signal.SIGTERM)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-2000:]
    assert "SIGTERM at step 3: checkpoint saved" in done.stderr and "Traceback" not in done.stderr
    _check_consistent(out, 3, [0, 2])
    assert _temporaries(out) == []  # the dead writer's temporary file was removed on resume
    # 3. SIGKILL with the step-4 checkpoint complete and fsynced but not yet renamed.
    _write_fault(out, "before_rename", checkpoint.FILE, 1)
    _check_consistent(out, 3, [0, 2])
    # 4. SIGKILL right after the rename, before the directory fsync: the new one is in place.
    _write_fault(out, "after_rename", checkpoint.FILE, 1)
    _check_consistent(out, 4, [0, 2, 3])
    # 5. SIGKILL between checkpoints (after step 5): loses only step 5.
    done = _step_fault(out, 5, signal.SIGKILL)
    assert done.returncode == -signal.SIGKILL
    _check_consistent(out, 4, [0, 2, 3])
    # 6. SIGINT after step 5: checkpoint at step 5, exit 130.
    done = _step_fault(out, 5, signal.SIGINT)
    assert done.returncode == 128 + signal.SIGINT and "SIGINT at step 5: checkpoint saved" in done.stderr
    _check_consistent(out, 5, [0, 2, 3, 4])  # (the killed run 5 saved nothing)
    # 7. SIGKILL half-way through the final model.safetensors: no model file, checkpoint at the end.
    _write_fault(out, "partial", "model.safetensors", 1)
    _check_consistent(out, STEPS, [0, 2, 3, 4, 5])
    assert not (out / "model.safetensors").exists() and len(_temporaries(out)) == 1
    # 8. The same command again finishes the run: it equals the uninterrupted one.
    done = _run(out)
    assert done.returncode == 0, done.stderr[-2000:]
    _same_run(out, reference, [0, 2, 3, 4, 5, STEPS])


def _limit_file_size(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_and_file_size_limit_keep_the_old_checkpoint(tmp_path, reference):
    out = tmp_path / "run"
    # A full disk (simulated: ENOSPC half-way) while writing the checkpoint of step 4.
    done = _run(out, {"EDLM_TEST_WRITE_FAULT": f"enospc:{checkpoint.FILE}:2:{tmp_path / 'unused'}"})
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("python -m edlm_ext.train: error: could not write") and "No space left on device" in line
    assert "is unchanged" in line and "Traceback" not in done.stderr
    _check_consistent(out, 2, [0])
    assert _temporaries(out) == []
    # A write cut short by RLIMIT_FSIZE (the checkpoint is ~3 MB): EFBIG, same outcome.
    size = (out / checkpoint.FILE).stat().st_size
    done = _run(out, preexec=_limit_file_size(size // 3))
    assert done.returncode == 1, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert "could not write" in line and "File too large" in line and "Traceback" not in done.stderr
    _check_consistent(out, 2, [0])
    assert _temporaries(out) == [] and (out / checkpoint.FILE).stat().st_size == size
    # With room again, the run resumes and ends as if nothing had happened.
    done = _run(out)
    assert done.returncode == 0, done.stderr[-2000:]
    _same_run(out, reference, [0, 2])
