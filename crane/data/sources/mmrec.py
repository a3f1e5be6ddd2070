"""An existing MMRec dataset folder, taken as is: ids and split are kept (no k-core, no
re-split), so results are comparable with MMRec runs on the same folder.

Options: `path` (the folder), `name` (`<name>.inter`; default: the folder's name, as in
MMRec's `data/<name>/` layout). Copied into the raw folder:
`<name>.inter`, `u_id_mapping.csv`, `i_id_mapping.csv` and, when present, `image_feat.npy`
and `text_feat.npy` (read later by the `mmrec_npy` feature encoder).
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
FEATURE_FILES = ("image_feat.npy", "text_feat.npy")


def acquire(spec: dict[str, Any], raw_dir: Path, progress: bool = True) -> dict[str, dict]:
    check_options(spec, OPTIONS, NAME)
    folder = Path(require_option(spec, "path", NAME))
    name = _name(spec)
    if not folder.is_dir():
        raise FileNotFoundError(f"MMRec dataset folder not found: {folder}")
    wanted = [f"{name}.inter", USER_MAPPING, ITEM_MAPPING]
    wanted += [extra for extra in FEATURE_FILES if (folder / extra).exists()]
    return {file_name: copy_local(folder / file_name, raw_dir) for file_name in wanted}


def _name(spec: dict[str, Any]) -> str:
    return spec.get("name") or Path(require_option(spec, "path", NAME)).name


def load_interactions(spec: dict[str, Any], raw_dir: Path,
                      max_malformed_share: float) -> MMRecFolder:
    return read_mmrec(raw_dir, _name(spec))


def load_items(spec: dict[str, Any], raw_dir: Path, asins: np.ndarray,
               max_malformed_share: float) -> pd.DataFrame:
    return items_table(asins, None)
