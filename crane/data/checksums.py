"""The checksum registry: `config/checksums.json`, URL (or bare file name) -> {sha256, size}.

The published Amazon files carry no checksums. The first download of a file records its
hash here (commit the registry), and every later download is verified against it, so a
changed or damaged mirror is caught instead of silently changing the dataset.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from crane import files

log = logging.getLogger(__name__)

DEFAULT_REGISTRY = Path("config") / "checksums.json"


class ChecksumRegistry:
    """A JSON file of known hashes; updates are locked and atomic (parallel jobs share it)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        entries = files.read_json(self.path)
        if not isinstance(entries, dict):
            raise ValueError(f"{self.path}: checksum registry must be a JSON object")
        return entries

    def lookup(self, url: str) -> dict | None:
        """The entry for `url`, else for its bare file name, else None."""
        entries = self._read()
        entry = entries.get(url) or entries.get(Path(urlparse(url).path).name)
        if entry is not None and not {"sha256", "size"} <= set(entry):
            raise ValueError(f"{self.path}: entry for {url} needs 'sha256' and 'size'")
        return entry

    def record(self, url: str, sha256: str, size: int) -> None:
        """Add `url` unless present (a known entry is never overwritten silently)."""
        with self._locked():
            entries = self._read()
            known = entries.get(url)
            if known is not None:
                if known.get("sha256") != sha256:
                    raise ValueError(f"{self.path}: {url} already registered with sha256 "
                                     f"{known.get('sha256')}, refusing to replace by {sha256}")
                return
            entries[url] = {"sha256": sha256, "size": int(size)}
            files.write_json(self.path, entries)
        log.info("registered checksum of %s in %s", url, self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Lock the folder, not the file: the file is replaced (new inode) on every update.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
