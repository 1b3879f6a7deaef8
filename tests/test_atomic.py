"""edlm_ext.atomic: outputs are the old file or the complete new one, never half
written; output paths are validated before any work (issue 11, item 2)."""
import os
import subprocess
import sys

import pytest

from edlm_ext import atomic
from edlm_ext.errors import InputError, OutputError


def _naive_write(path, data: bytes, fail_after: int):
    """What an in-place writer does when the disk fills up half-way (for the power check)."""
    with open(path, "wb") as f:
        f.write(data[:fail_after])
        raise OSError(28, "No space left on device")


def test_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "sub" / "out.json"
    atomic.write_json(p, {"a": 1})
    assert p.read_text() == '{\n  "a": 1\n}\n'
    atomic.write_text(p, "second")
    assert p.read_text() == "second" and sorted(x.name for x in p.parent.iterdir()) == ["out.json"]


def test_a_full_disk_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "model.bin"
    old, new = b"old content " * 100, b"new content " * 1000
    p.write_bytes(old)
    monkeypatch.setenv("EDLM_TEST_WRITE_FAULT", f"enospc:model.bin:1:{tmp_path / 'unused'}")
    with pytest.raises(OutputError, match=r"could not write .*model\.bin: No space left on device.*unchanged"):
        atomic.write_bytes(p, new)
    assert p.read_bytes() == old and os.listdir(tmp_path) == ["model.bin"]
    monkeypatch.delenv("EDLM_TEST_WRITE_FAULT")
    atomic.write_bytes(p, new)
    assert p.read_bytes() == new
    # power: the same fault with an in-place write destroys the old file, which the check above sees
    with pytest.raises(OSError):
        _naive_write(p, new, 100)
    assert p.read_bytes() != old and p.read_bytes() != new


def test_a_file_size_limit_keeps_the_old_file(tmp_path):
    """RLIMIT_FSIZE in a child: EFBIG half-way (CPython ignores SIGXFSZ), old file intact."""
    p = tmp_path / "out.csv"
    p.write_text("old\n")
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
            "from edlm_ext import atomic; atomic.write_bytes(sys.argv[1], b'x' * 100000)")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    proc = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "OutputError: could not write" in proc.stderr and "File too large" in proc.stderr
    assert p.read_text() == "old\n" and os.listdir(tmp_path) == ["out.csv"]


def test_atomic_path_commits_on_success_and_cleans_up_on_error(tmp_path):
    p = tmp_path / "plot.png"
    with atomic.atomic_path(p) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != p
        tmp.write_bytes(b"png")
    assert p.read_bytes() == b"png"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.atomic_path(p) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert p.read_bytes() == b"png" and os.listdir(tmp_path) == ["plot.png"]


@pytest.mark.parametrize("case", ["directory", "file-as-parent", "unwritable", "empty", "trailing-slash"])
def test_bad_output_paths_fail_at_once(tmp_path, case):
    (tmp_path / "a_file").write_text("x")
    path, match = {
        "directory": (tmp_path, "is a directory"),
        "file-as-parent": (tmp_path / "a_file" / "out.jsonl", r"a_file is not a directory"),
        "unwritable": ("/sys/edlm_out.jsonl", r"cannot write in /sys"),  # even root cannot write there
        "empty": ("", "empty path"),
        "trailing-slash": (str(tmp_path / "new") + os.sep, "names a directory"),
    }[case]
    with pytest.raises(InputError, match=match):
        atomic.check_output_file(path, "--output")


def test_unwritable_directory_for_a_normal_user(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere; /sys covers unwritable paths for root")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(InputError, match="cannot write in"):
            atomic.check_output_file(d / "x.csv")
    finally:
        d.chmod(0o700)


def test_good_output_paths_create_nothing(tmp_path):
    target = tmp_path / "new" / "deeper" / "out.jsonl"
    assert atomic.check_output_file(target) == target
    assert atomic.check_output_dir(tmp_path / "run") == tmp_path / "run"
    assert os.listdir(tmp_path) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="exists and is not a directory"):
        atomic.check_output_dir(tmp_path / "f", "--out")


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = os.getppid()  # a running process that is not us
    stale = tmp_path / f".checkpoint.safetensors.{dead.pid}.abcd1234.tmp"
    other = tmp_path / f".plot.png.{dead.pid}.abcd1234.tmp.png"
    running = tmp_path / f".checkpoint.safetensors.{live}.abcd1234.tmp"
    for p in (stale, other, running):
        p.write_bytes(b"x")
    (tmp_path / "keep.tmp").write_bytes(b"x")  # not one of ours
    assert sorted(atomic.remove_stale_temporaries(tmp_path)) == sorted([stale, other])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, "keep.tmp"])
