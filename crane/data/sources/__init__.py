"""Raw data sources, selected per dataset by `source: {type: ...}` in the config.

Each source module provides:
- `acquire(spec, raw_dir, progress) -> {file name: {sha256, size}}`: put the raw files in
  raw_dir (download, copy or generate), skipping files already complete;
- `load_interactions(spec, raw_dir, max_malformed_share)`: a frame of string `user`, `item`,
  float `rating`, int `timestamp` (or, for `mmrec`, an already split `MMRecFolder`);
  counts for stats.json may ride in the frame's `attrs["source_stats"]`;
- `load_items(spec, raw_dir, asins, max_malformed_share)`: the items table, dense-id order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from crane import files
from crane.data.sources import (
    amazon2014, amazon2018, amazon2023, demo, mmrec, pairs_csv, table)
from crane.data.sources._common import check_options

log = logging.getLogger(__name__)

SOURCES: dict[str, ModuleType] = {
    module.NAME: module
    for module in (amazon2014, amazon2018, amazon2023, pairs_csv, table, mmrec, demo)
}
MANIFEST = "acquired.json"


def source_module(source_spec: dict[str, Any] | None) -> ModuleType:
    """The module of `source.type`, after checking the spec's option names."""
    if not isinstance(source_spec, dict) or "type" not in source_spec:
        raise ValueError(f"dataset source: expected a mapping with 'type' (one of "
                         f"{sorted(SOURCES)}), got {source_spec!r}")
    kind = source_spec["type"]
    if kind not in SOURCES:
        raise ValueError(f"source.type: unknown {kind!r}; expected one of {sorted(SOURCES)}")
    module = SOURCES[kind]
    check_options(source_spec, module.OPTIONS, module.NAME)
    return module


def acquire(dataset_name: str, dataset_spec: dict[str, Any], raw_dir: str | Path,
            progress: bool = True) -> dict[str, Any]:
    """Fill raw_dir for the dataset and write `raw_dir/acquired.json` last (atomically).

    A raw folder whose manifest matches the source spec and whose files are all present
    with their recorded sizes is left as is (rerunning is cheap and changes nothing).
    """
    raw_dir = Path(raw_dir)
    source_spec = dataset_spec.get("source")
    module = source_module(source_spec)
    manifest_path = raw_dir / MANIFEST
    if _is_complete(manifest_path, raw_dir, dataset_name, source_spec):
        log.info("%s: raw files already complete in %s", dataset_name, raw_dir)
        return files.read_json(manifest_path)
    raw_dir.mkdir(parents=True, exist_ok=True)
    records = module.acquire(dict(source_spec), raw_dir, progress=progress)
    manifest = {"dataset": dataset_name, "source": source_spec, "files": records}
    files.write_json(manifest_path, manifest)
    log.info("%s: acquired %d files into %s", dataset_name, len(records), raw_dir)
    return manifest


def _is_complete(manifest_path: Path, raw_dir: Path, dataset_name: str,
                 source_spec: dict[str, Any]) -> bool:
    if not manifest_path.exists():
        return False
    manifest = files.read_json(manifest_path)
    if manifest.get("dataset") != dataset_name or manifest.get("source") != source_spec:
        return False
    return all((raw_dir / name).exists() and (raw_dir / name).stat().st_size == entry["size"]
               for name, entry in manifest.get("files", {}).items())
