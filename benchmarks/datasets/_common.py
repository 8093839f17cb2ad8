"""Helpers shared by the build_<name>.py scripts: find a package's data without importing it, make a
seeded validation split, print a summary. Only numpy and mmhal are needed here."""
from __future__ import annotations

import argparse
import importlib.util
import io
import tarfile
from pathlib import Path
from typing import Mapping, Optional

import numpy as np


def package_dir(name: str, install_hint: str) -> Path:
    """The folder of the installed package ``name``, found without importing (running) it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package '{name}' is not installed; install it with: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def parser(description: str, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=default_out, help=f"output .npz path (default: {default_out})")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation hold-out (default 0)")
    return p


def stratified_holdout(labels: np.ndarray, idx: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded, class-stratified subset (about ``fraction`` of each class) of the sample indices ``idx``."""
    rng = np.random.default_rng(seed)
    picked = []
    for k in np.unique(labels[idx]):
        members = idx[labels[idx] == k]
        n = max(1, int(round(fraction * len(members))))
        picked.append(rng.choice(members, size=n, replace=False))
    return np.sort(np.concatenate(picked))


def group_holdout(groups: np.ndarray, idx: np.ndarray, n_groups: int, seed: int) -> np.ndarray:
    """The indices in ``idx`` whose group is one of ``n_groups`` groups drawn (seeded) from those in ``idx``."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(np.unique(groups[idx]), size=n_groups, replace=False)
    return idx[np.isin(groups[idx], chosen)]


def summary(
    out: Path,
    modalities: Mapping[str, np.ndarray],
    labels: np.ndarray,
    class_names,
    split: Optional[np.ndarray] = None,
    groups: Optional[np.ndarray] = None,
) -> None:
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    print(f"  samples: {len(labels)}")
    for m, a in modalities.items():
        print(f"  x.{m}: {tuple(a.shape[1:])} {a.dtype}")
    counts = np.bincount(labels, minlength=len(class_names))
    print("  classes: " + ", ".join(f"{c} {n}" for c, n in zip(class_names, counts)))
    if split is not None:
        print("  split: " + ", ".join(f"{s} {int((split == s).sum())}" for s in ("train", "val", "test")))
    else:
        print("  split: none in the file (mmhal makes one" + (", group-aware)" if groups is not None else ")"))
    if groups is not None:
        print(f"  groups: {len(np.unique(groups))}")


def file_from_deb(deb: Path, member_path: str) -> bytes:
    """The bytes of ``member_path`` (e.g. usr/lib/R/...) inside a Debian .deb (an ar archive holding data.tar.*)."""
    blob = Path(deb).read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise SystemExit(f"{deb} is not a Debian package (.deb)")
    pos = 8
    while pos + 60 <= len(blob):
        name = blob[pos : pos + 16].decode().strip().rstrip("/")
        size = int(blob[pos + 48 : pos + 58].decode().strip())
        body = blob[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                for member in tar.getmembers():
                    if member.name.lstrip("./") == member_path:
                        return tar.extractfile(member).read()
            raise SystemExit(f"{deb} holds no {member_path}")
        pos += 60 + size + (size & 1)
    raise SystemExit(f"{deb} has no data.tar member")


def add_rda_arguments(p: argparse.ArgumentParser, member: str, package: str) -> None:
    """``--rda`` (the installed file, default /<member>) and ``--deb`` (read it from a downloaded .deb instead)."""
    default = Path("/") / member
    p.add_argument("--rda", type=Path, default=default, help=f"the R data file (default {default})")
    p.add_argument("--deb", type=Path, help=f"read the R data file from this {package} .deb instead")


def rda_bytes(args: argparse.Namespace, member: str, package: str) -> bytes:
    """The bytes of the R data file that ``--deb`` or ``--rda`` name (see ``add_rda_arguments``)."""
    if args.deb is not None:
        return file_from_deb(args.deb, member)
    if args.rda.is_file():
        return args.rda.read_bytes()
    raise SystemExit(f"{args.rda} not found: apt-get install {package}, or apt-get download {package} and pass --deb")


def write_npz(out, modalities, labels, class_names, split=None, groups=None) -> None:
    """Save the dataset in mmhal's .npz format at ``out`` (folders made) and print its summary."""
    from mmhal.data.npz import save_npz

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(out, modalities, labels, split=split, groups=groups, class_names=class_names)
    summary(out, modalities, labels, class_names, split=split, groups=groups)


def read_r_data(raw: bytes, name: str):
    """The object ``name`` (a data frame) of an .rda/.RData file's bytes, parsed by the pure-Python
    ``rdata`` package (R's serialisation format; no R, no pickle)."""
    try:
        import rdata
    except ImportError:
        raise SystemExit("the 'rdata' package is needed: pip install rdata==1.1.0") from None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Unknown encoding. Assumed ASCII."
        return rdata.read_rda(io.BytesIO(raw))[name]
