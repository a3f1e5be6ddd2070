"""Resumable, verified HTTP downloads (stdlib urllib; no extra dependency).

A file is streamed into `<dest>.part`. When the connection drops, the next attempt asks the
server for the rest (HTTP Range) and appends; only a complete file whose size and sha256
check out is renamed onto `<dest>` (atomic), so `<dest>` existing means complete. Transient
failures (5xx, 408/429, resets, timeouts, short reads) are retried with exponential
backoff; other HTTP errors (404, 403, ...) stop at once with the URL and status.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from crane import files
from crane.data.checksums import ChecksumRegistry

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_USER_AGENT = "crane-repro (research data download)"
_RETRYABLE_STATUS = {408, 429}
_CONTENT_RANGE_TOTAL = re.compile(r"/\s*(\d+)\s*$")


class DownloadError(ValueError):
    """A download failed for good (a ValueError, so the CLI reports it as one clear line)."""


class ChecksumMismatch(DownloadError):
    """A downloaded or cached file does not match its registered size or sha256."""


class _Transient(Exception):
    """A failure worth retrying (server error, dropped connection, timeout)."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5  # failed attempts in a row without progress before giving up
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    max_backoff: float = 60.0
    timeout: float = 60.0  # socket timeout per read

    @classmethod
    def from_spec(cls, spec: dict | None) -> "RetryPolicy":
        spec = dict(spec or {})
        unknown = set(spec) - {"retries", "backoff", "max_backoff", "timeout"}
        if unknown:
            raise ValueError(f"download: unknown option(s) {sorted(unknown)}")
        return cls(**spec)


@dataclass(frozen=True)
class FileRecord:
    path: Path
    sha256: str
    size: int

    def as_json(self) -> dict:
        return {"sha256": self.sha256, "size": self.size}


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    registry: ChecksumRegistry | None = None,
    policy: RetryPolicy = RetryPolicy(),
    progress: bool = True,
) -> FileRecord:
    """Fetch `url` to `dest` (resuming a `.part` file), verify it and return its record.

    The expected sha256/size come from the arguments, else from the registry; a file seen
    for the first time is added to the registry. An existing complete `dest` that matches
    is not fetched again.
    """
    dest = Path(dest)
    known = registry.lookup(url) if registry is not None else None
    expected_sha = sha256 or (known or {}).get("sha256")
    expected_size = size if size is not None else (known or {}).get("size")

    if dest.exists():
        record = _record_of(dest)
        if _matches(record, expected_sha, expected_size):
            log.info("%s: already complete, skipped", dest)
            _register(registry, url, record, known)
            return record
        log.warning("%s: present but does not match the registered checksum; fetching again",
                    dest)
        dest.unlink()

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch_into(url, part, policy.timeout, progress)
            break
        except _Transient as error:
            gained = (part.stat().st_size if part.exists() else 0) > before
            failures = 0 if gained else failures + 1
            if failures > policy.retries:
                raise DownloadError(f"{url}: giving up after {policy.retries} retries: "
                                    f"{error}") from None
            delay = min(policy.backoff * 2 ** max(failures - 1, 0), policy.max_backoff)
            log.warning("%s: %s; retrying in %.2fs (%d/%d)", url, error, delay, failures,
                        policy.retries)
            time.sleep(delay)

    record = _record_of(part)
    if expected_size is not None and record.size != int(expected_size):
        part.unlink()
        raise ChecksumMismatch(f"{dest.name} ({url}): size {record.size} bytes, expected "
                               f"{expected_size}")
    if expected_sha is not None and record.sha256 != expected_sha:
        part.unlink()
        raise ChecksumMismatch(f"{dest.name} ({url}): sha256 mismatch: expected {expected_sha}, "
                               f"got {record.sha256}")
    os.replace(part, dest)
    record = FileRecord(dest, record.sha256, record.size)
    _register(registry, url, record, known)
    return record


def _fetch_into(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One attempt: append the missing bytes of `url` to `part`; raise _Transient on failure."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # Nothing left to send: the part is complete if the server's total agrees.
            total = _total_from_content_range(error.headers.get("Content-Range"))
            if total == offset:
                return
            part.unlink()
            raise _Transient(f"HTTP 416 for a {offset}-byte partial file; restarting") from None
        if error.code >= 500 or error.code in _RETRYABLE_STATUS:
            raise _Transient(f"HTTP {error.code} {error.reason}") from None
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _Transient(f"{type(error).__name__}: {error}") from None

    with response:
        status = getattr(response, "status", 200)
        if offset and status == 206:
            total = _total_from_content_range(response.headers.get("Content-Range"))
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # the server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        with open(part, mode) as fh, tqdm(total=total, initial=offset, unit="B",
                                         unit_scale=True, desc=part.name[:-5],
                                         disable=None if progress else True,
                                         leave=False) as bar:
            try:
                while chunk := response.read(_CHUNK):
                    fh.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as error:
                raise _Transient(f"connection dropped: {type(error).__name__}: {error}") from None
    received = part.stat().st_size
    if total is not None and received < total:
        raise _Transient(f"connection closed after {received} of {total} bytes")
    if total is not None and received > total:
        part.unlink()
        raise _Transient(f"received {received} bytes, more than the announced {total}")


def _total_from_content_range(value: str | None) -> int | None:
    match = _CONTENT_RANGE_TOTAL.search(value or "")
    return int(match.group(1)) if match else None


def _record_of(path: Path) -> FileRecord:
    return FileRecord(path, files.sha256_file(path), path.stat().st_size)


def _matches(record: FileRecord, sha256: str | None, size: int | None) -> bool:
    return ((size is None or record.size == int(size))
            and (sha256 is None or record.sha256 == sha256))


def _register(registry: ChecksumRegistry | None, url: str, record: FileRecord,
              known: dict | None) -> None:
    if registry is not None and known is None:
        registry.record(url, record.sha256, record.size)
