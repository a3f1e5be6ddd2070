"""An existing MMRec dataset folder, taken as is: ids and split are kept (no k-core, no
re-split), so results are comparable with MMRec runs on the same folder.

Options: `path`, the folder or the `.inter` file itself; `name` (`<name>.inter`; default:
the file's stem when `path` is the file, else the folder's name, as in MMRec's
`data/<name>/` layout). Only `<name>.inter` is required. Copied into the raw folder with it,
when present: `u_id_mapping.csv` and `i_id_mapping.csv` (the raw user and item ids; without
them the ids are their own names, as MMRec trains from the `.inter` alone), `image_feat.npy`
and `text_feat.npy` (read later by the `mmrec_npy` feature encoder). Nothing is copied before
the `.inter` file is found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crane.data.mmrec_format import ITEM_MAPPING, USER_MAPPING, MMRecFolder, read_mmrec
from crane.data.sources._common import check_options, copy_local, items_table, require_option

NAME = "mmrec"
OPTIONS = {"path", "name"}
MAPPING_FILES = (USER_MAPPING, ITEM_MAPPING)
FEATURE_FILES = ("image_feat.npy", "text_feat.npy")


def acquire(spec: dict[str, Any], raw_dir: Path, progress: bool = True) -> dict[str, dict]:
    check_options(spec, OPTIONS, NAME)
    folder, name = locate(spec)
    inter = folder / f"{name}.inter"
    if not inter.is_file():
        raise FileNotFoundError(_not_found(spec, folder, name))
    optional = [extra for extra in MAPPING_FILES + FEATURE_FILES if (folder / extra).is_file()]
    for mapping in MAPPING_FILES:  # a copy from an earlier acquire would rename the ids
        if mapping not in optional:
            (raw_dir / mapping).unlink(missing_ok=True)
    return {file_name: copy_local(folder / file_name, raw_dir)
            for file_name in [inter.name] + optional}


def locate(spec: dict[str, Any]) -> tuple[Path, str]:
    """(folder, name) of the `.inter` file that `path` and `name` point at."""
    path = Path(require_option(spec, "path", NAME))
    if path.suffix == ".inter" and not path.is_dir():
        if spec.get("name") and spec["name"] != path.stem:
            raise ValueError(f"source mmrec: source.name {spec['name']!r} does not match the "
                             f"file source.path names ({path}): drop `name`, or make them "
                             f"agree")
        return path.parent, path.stem
    return path, spec.get("name") or path.name


def _not_found(spec: dict[str, Any], folder: Path, name: str) -> str:
    optional = (f"only <name>.inter is required; {', '.join(MAPPING_FILES)} (the raw ids; "
                f"without them the ids are their own names) and {', '.join(FEATURE_FILES)} "
                f"are optional")
    if not folder.is_dir():
        return (f"MMRec dataset: {folder}: not found (source.path: the folder holding "
                f"<name>.inter, or the .inter file itself); {optional}")
    present = sorted(p.name for p in folder.glob("*.inter"))
    default = "" if spec.get("name") else " (source.name defaults to the folder's name)"
    found = (f"the folder has {present}: set source.name to one of their stems, or "
             f"source.path to the file" if present else "the folder has no .inter file")
    return (f"MMRec interaction file not found: {folder / (name + '.inter')}{default}; "
            f"{found}; {optional}")


def _name(spec: dict[str, Any]) -> str:
    return locate(spec)[1]


def load_interactions(spec: dict[str, Any], raw_dir: Path,
                      max_malformed_share: float) -> MMRecFolder:
    return read_mmrec(raw_dir, _name(spec))


def load_items(spec: dict[str, Any], raw_dir: Path, asins: np.ndarray,
               max_malformed_share: float) -> pd.DataFrame:
    return items_table(asins, None)
