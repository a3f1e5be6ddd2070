"""The checksum registry: `config/checksums.json`, URL (or bare file name) -> {sha256, size}.

The published Amazon files carry no checksums, and no trustworthy public list of their sha256
was found, so the registry ships empty. Entries get there in two ways:
- the first download of a file is verified as a whole (crane.data.download: the gzip stream
  read to its end, JSON lines parsed) and only then is its hash recorded here; commit the
  registry, and every later download is verified against it, so a changed or damaged mirror
  is caught instead of silently changing the dataset;
- by hand, from a source you trust: `sha256sum FILE` and `stat -c %s FILE` of a copy checked
  against the publisher (or another group's published hashes), entered under the full URL or
  the bare file name (which then matches that file on any mirror).
A wrong entry makes every download of that file fail with a message naming the registry file
and the entry: delete the entry and run again.
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
        found = self.find(url)
        return found[1] if found is not None else None

    def find(self, url: str) -> tuple[str, dict] | None:
        """(key, entry) of `url`'s entry (the URL itself, else its bare file name), or None."""
        entries = self._read()
        for key in (url, Path(urlparse(url).path).name):
            entry = entries.get(key)
            if entry is None:
                continue
            if not isinstance(entry, dict) or not {"sha256", "size"} <= set(entry):
                raise ValueError(f"{self.path}: entry {key!r} needs 'sha256' and 'size'; fix "
                                 f"or delete it")
            return key, entry
        return None

    def record(self, url: str, sha256: str, size: int) -> None:
        """Add `url` unless present (a known entry is never overwritten silently)."""
        try:
            with self._locked():
                entries = self._read()
                known = entries.get(url)
                if known is not None:
                    if known.get("sha256") != sha256:
                        raise ValueError(
                            f"{self.path}: {url} already registered with sha256 "
                            f"{known.get('sha256')}, refusing to replace by {sha256}; if the "
                            f"entry is wrong, delete it and run again")
                    return
                entries[url] = {"sha256": sha256, "size": int(size)}
                files.write_json(self.path, entries)
        except OSError as error:
            raise ValueError(f"cannot record the checksum of {url} in the registry {self.path} "
                             f"(locking its folder or writing the file failed: {error}); make "
                             f"it writable, or set the source's `checksums` to another file "
                             f"or null") from None
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
