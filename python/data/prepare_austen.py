"""Prepare the Jane Austen corpus (public domain) from Debian's r-cran-janeaustenr.

    python python/data/prepare_austen.py            # downloads the .deb with apt-get, writes data/austen/
    python python/data/prepare_austen.py --deb FILE # from a .deb you already have

The package stores the six novels as R character vectors (one element per line)
in data/Rdata.rdb: blobs of a 4-byte big-endian length and a zlib stream of R's
XDR serialization, indexed by the gzip-compressed Rdata.rdx. This script reads
them with a small reader of that format (the few SEXP types these files use),
joins each novel's lines into paragraphs, and writes

    data/austen/train.txt   all novels but the last 5% of each
    data/austen/valid.txt   the last 5% of each novel (a fixed, contiguous split)
    data/austen/README.md   source, licence, sizes

one paragraph per line. The output is committed, so a fresh clone needs nothing.
"""
from __future__ import annotations

import argparse
import gzip
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

try:
    from edlm_ext import atomic
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from edlm_ext import atomic

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "data" / "austen"
DATA_DIR = "usr/lib/R/site-library/janeaustenr/data"
NOVELS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"]
VALID_FRACTION = 0.05

# R SEXP types used by these files
NILVALUE, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 254, 1, 2, 9, 10, 13, 14, 16, 19
REFSXP = 255


class RList(list):
    """An R vector: its elements, plus its attributes (e.g. 'names') as a dict."""

    attrs: dict = {}


class RReader:
    """Reads R's XDR serialization (format versions 2 and 3): enough for vectors,
    pairlists, symbols and strings, which is all Rdata.rdb / .rdx hold."""

    def __init__(self, data: bytes):
        self.b, self.i, self.refs = data, 0, []

    def _int(self) -> int:
        (v,) = struct.unpack_from(">i", self.b, self.i)
        self.i += 4
        return v

    def read(self):
        if self.b[:2] != b"X\n":
            raise ValueError("not an XDR R serialization")
        self.i = 2
        version = self._int()
        self._int()  # R version that wrote it
        self._int()  # minimal R version to read it
        if version == 3:
            n = self._int()
            self.i += n  # native encoding name
        return self._item()

    def _item(self):
        flags = self._int()
        kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind == NILVALUE:
            return None
        if kind == REFSXP:
            return self.refs[(flags >> 8) - 1]
        if kind == SYMSXP:
            name = self._item()
            self.refs.append(name)
            return name
        if kind == LISTSXP:  # pairlist -> [(tag, value), ...]
            if has_attr:
                self._item()
            tag = self._item() if has_tag else None
            head = self._item()
            tail = self._item()
            return [(tag, head)] + (tail or [])
        if kind == CHARSXP:
            n = self._int()
            if n == -1:
                return None
            s = self.b[self.i:self.i + n].decode("utf-8", errors="replace")
            self.i += n
            return s
        if kind in (STRSXP, VECSXP):
            n = self._int()
            out = RList(self._item() for _ in range(n))
        elif kind in (INTSXP, LGLSXP):
            n = self._int()
            out = RList(struct.unpack_from(f">{n}i", self.b, self.i))
            self.i += 4 * n
        elif kind == REALSXP:
            n = self._int()
            out = RList(struct.unpack_from(f">{n}d", self.b, self.i))
            self.i += 8 * n
        else:
            raise ValueError(f"unsupported SEXP type {kind} at byte {self.i - 4}")
        out.attrs = dict(self._item()) if has_attr else {}
        return out


def read_rdb(data_dir: Path) -> dict[str, list]:
    """name -> object for every object in an R lazy-load database (Rdata.rdx / .rdb)."""
    index = RReader(gzip.decompress((data_dir / "Rdata.rdx").read_bytes())).read()
    fields = dict(zip(index.attrs["names"], index))
    variables = fields["variables"]
    rdb = (data_dir / "Rdata.rdb").read_bytes()
    out = {}
    for name, (offset, length) in zip(variables.attrs["names"], variables):
        blob = rdb[int(offset):int(offset) + int(length)]
        (raw_len,) = struct.unpack(">I", blob[:4])
        raw = zlib.decompress(blob[4:])
        if len(raw) != raw_len:
            raise ValueError(f"{name}: {len(raw)} bytes, the header says {raw_len}")
        out[name] = RReader(raw).read()
    return out


def paragraphs(lines: list) -> list[str]:
    """Join a novel's lines into paragraphs (blank lines separate them)."""
    out, cur = [], []
    for line in lines:
        line = (line or "").strip()
        if line:
            cur.append(line)
        elif cur:
            out.append(" ".join(cur))
            cur = []
    if cur:
        out.append(" ".join(cur))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deb", type=Path, help="a downloaded r-cran-janeaustenr .deb")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    atomic.check_output_dir(args.out, "--out")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deb = args.deb
        if deb is None:
            subprocess.run(["apt-get", "download", "r-cran-janeaustenr"], cwd=tmp, check=True)
            deb = next(tmp.glob("r-cran-janeaustenr_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(tmp / "x")], check=True)
        objects = read_rdb(tmp / "x" / DATA_DIR)
        version = deb.name
    train, valid, sizes = [], [], []
    for name in NOVELS:
        paras = paragraphs(objects[name])
        cut = int(len(paras) * (1 - VALID_FRACTION))
        train += paras[:cut]
        valid += paras[cut:]
        sizes.append(f"| {name} | {len(paras)} | {sum(map(len, paras))} |")
    atomic.write_text(args.out / "train.txt", "\n".join(train) + "\n")
    atomic.write_text(args.out / "valid.txt", "\n".join(valid) + "\n")
    atomic.write_text(args.out / "README.md",
        "# Jane Austen's six novels\n\n"
        f"Public domain texts, from Debian's `{version}` (R package janeaustenr, data/Rdata.rdb),\n"
        "prepared by `python python/data/prepare_austen.py`: one paragraph per line; the last\n"
        f"{VALID_FRACTION:.0%} of each novel's paragraphs is validation (valid.txt), the rest is train.txt.\n\n"
        "| novel | paragraphs | characters |\n| --- | --- | --- |\n" + "\n".join(sizes) + "\n\n"
        f"train: {len(train)} paragraphs, {sum(map(len, train))} characters; "
        f"valid: {len(valid)} paragraphs, {sum(map(len, valid))} characters.\n"
    )
    print(f"wrote {args.out}: train {len(train)} / valid {len(valid)} paragraphs")


if __name__ == "__main__":
    main()
