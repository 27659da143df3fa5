"""Gather what a lent GPU host needs to train search_quality.py entries, in one ignored folder.

    python benchmarks/device_bundle.py FOLDER... [--bundle runs/device] [--python 3.12]

The host (see the device tool's notes) has PyTorch, numpy, scipy, PyYAML, tensorboard and
matplotlib, but none of mbnas's other dependencies, no network, and no ``../shared``. This
writes into ``--bundle`` (under ``runs/``, so git ignores it and the device call carries it):

- ``wheels/``: optuna, hydra-core, omegaconf, antlr4-python3-runtime, alembic, mako, sqlalchemy
  and colorlog, at the versions installed here (the ones the tests ran with), for the host's
  Python;
- ``shared/``: the CIFAR-10 tarball and ``tools/cifar10_full.py``, laid out as ``../shared`` is
  (the tool reads ``../data`` next to itself);
- one folder per ``FOLDER`` (a ``search_quality.py --out`` folder): its ``entries.json`` and the
  YAML files it names, nothing else (study databases stay here).

Then the device call is ``bash benchmarks/device_train.sh NAME [train options]`` with ``carry``
naming the bundle; see that script. Takes about a minute (the downloads).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

# mbnas's dependencies the GPU host lacks (its package list: the device tool's KINDS.md).
MISSING_ON_HOST = ("optuna", "hydra-core", "omegaconf", "antlr4-python3-runtime", "alembic",
                   "mako", "sqlalchemy", "colorlog")
# antlr4-python3-runtime 4.9.3 (hydra's pin) is published as a source archive only.
SOURCE_ONLY = ("antlr4-python3-runtime",)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
TARBALL = Path("data/cifar10-train-jpeg.tar.gz")
UNPACK_TOOL = Path("tools/cifar10_full.py")


def download_wheels(wheels: Path, python: str) -> list[str]:
    """The wheels of :data:`MISSING_ON_HOST`, pinned to this machine's versions."""
    wheels.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in MISSING_ON_HOST]
    for pin in pins:
        if pin.split("==")[0] in SOURCE_ONLY:  # pure Python: a wheel built here runs anywhere
            command = ["wheel", "--no-deps", "-w", str(wheels), pin]
        else:
            command = ["download", "--no-deps", "--only-binary=:all:", "--python-version", python,
                       "--implementation", "cp", "-d", str(wheels), pin,
                       *(f"--platform={p}" for p in PLATFORMS)]
        subprocess.run([sys.executable, "-m", "pip", "-q", *command], check=True)
    return pins


def copy_shared(shared: Path, bundle: Path) -> None:
    for relative in (TARBALL, UNPACK_TOOL):
        source = shared / relative
        if not source.is_file():
            raise SystemExit(f"device_bundle.py: {source} is missing; pass --shared DIR (the "
                             "folder with data/ and tools/)")
        (bundle / "shared" / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, bundle / "shared" / relative)


def copy_entries(folder: Path, bundle: Path) -> int:
    """``folder``'s entries.json and the architecture files it names; how many entries."""
    manifest = folder / "entries.json"
    if not manifest.is_file():
        raise SystemExit(f"device_bundle.py: {manifest} is missing: run search_quality.py "
                         f"--stage search --out {folder} first")
    entries = json.loads(manifest.read_text())["entries"]
    target = bundle / folder.name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(manifest, target / "entries.json")
    for entry in entries.values():
        (target / entry["arch"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / entry["arch"], target / entry["arch"])
    return len(entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="search_quality.py --out folders")
    parser.add_argument("--bundle", type=Path, default=Path("runs/device"))
    parser.add_argument("--python", default="3.12", help="the host's Python version")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    args = parser.parse_args()
    for folder in args.folders:
        print(f"{folder}: {copy_entries(folder, args.bundle)} entries")
    copy_shared(args.shared, args.bundle)
    pins = download_wheels(args.bundle / "wheels", args.python)
    size = sum(f.stat().st_size for f in args.bundle.rglob("*") if f.is_file())
    print(f"wheels: {' '.join(pins)}\n{args.bundle}: {size / 2**20:.1f} MiB (a device call "
          "carries at most 64 MiB)")


if __name__ == "__main__":
    main()
