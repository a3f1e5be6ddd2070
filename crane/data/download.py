"""Resumable, verified HTTP downloads (stdlib urllib; no extra dependency).

A file is streamed into `<dest>.part`. When the connection drops, the next attempt asks the
server for the rest (HTTP Range) and appends; only a complete file that checks out is renamed
onto `<dest>` (atomic), so `<dest>` existing means complete. Transient failures (5xx, 408/429,
resets, timeouts, short reads) are retried with exponential backoff; other HTTP errors (404,
403, ...) stop at once with the URL and status.

What "checks out" means:
- with a known sha256/size (an argument, or an entry of the checksum registry): they match;
  a mismatch names the registry file and entry and says what to do;
- without one (a first download): the content is read as a whole as its name says before its
  hash is recorded: a JSON-lines file (`.json`, `.jsonl`, gzip or not) must parse line by line
  as `crane.data.parse` reads it (JSON or the 2014 Python-literal lines; the gzip stream read
  to its end, so truncation and CRC errors show), any other gzip file must decompress to the
  end, and a 2014 `.b` image-feature file must hold whole records. A damaged file is deleted.

Each file has an overall deadline (`download.deadline`, seconds, all attempts and waits
included; by default 2 hours plus one second per 512 KiB of the file once its size is known),
so a server that trickles bytes cannot hold a job forever. A failed write (disk full, no
permission) stops at once, naming the path and the operation.
"""

from __future__ import annotations

import ast
import gzip
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from crane import files
from crane.data import image_features_b, parse
from crane.data.checksums import ChecksumRegistry

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_USER_AGENT = "crane-repro (research data download)"
_RETRYABLE_STATUS = {408, 429}
_CONTENT_RANGE_TOTAL = re.compile(r"/\s*(\d+)\s*$")
DEADLINE_FLOOR_S = 2 * 3600.0  # the default deadline of any file
DEADLINE_BYTES_PER_S = 512 * 1024  # ... plus one second per this many bytes of the file
_JSON_LINES_SUFFIXES = (".json", ".jsonl")
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


class DownloadError(ValueError):
    """A download failed for good (a ValueError, so the CLI reports it as one clear line)."""


class ChecksumMismatch(DownloadError):
    """A downloaded or cached file does not match its registered size or sha256."""


class DamagedDownload(DownloadError):
    """A first download (nothing to compare with) cannot be read as the format it claims."""


class _Transient(Exception):
    """A failure worth retrying (server error, dropped connection, timeout)."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5  # failed attempts in a row without progress before giving up
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    max_backoff: float = 60.0
    timeout: float = 60.0  # socket timeout per read
    deadline: float | None = None  # seconds for the whole file; None: default_deadline(size)

    @classmethod
    def from_spec(cls, spec: dict | None) -> "RetryPolicy":
        spec = dict(spec or {})
        unknown = set(spec) - {"retries", "backoff", "max_backoff", "timeout", "deadline"}
        if unknown:
            raise ValueError(f"download: unknown option(s) {sorted(unknown)}")
        return cls(**spec)


def default_deadline(size: int | None) -> float:
    """Seconds allowed for a file of `size` bytes (unknown size: the floor)."""
    return DEADLINE_FLOOR_S + (size or 0) / DEADLINE_BYTES_PER_S


class _Deadline:
    """The overall time limit of one file: fixed by the policy, or grown with the file's
    size once a response announces it."""

    def __init__(self, url: str, policy: RetryPolicy, size: int | None) -> None:
        self.url = url
        self.fixed = policy.deadline is not None
        self.seconds = policy.deadline if self.fixed else default_deadline(size)
        self.started = time.monotonic()

    def learn_size(self, size: int | None) -> None:
        if not self.fixed and size:
            self.seconds = max(self.seconds, default_deadline(size))

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def check(self, part: Path) -> None:
        if self.remaining() <= 0:
            kept = (f"the partial file {part} is kept and the next run resumes it"
                    if part.exists() else "nothing was received")
            raise DownloadError(
                f"{self.url}: not complete within the deadline of {_seconds(self.seconds)} s "
                f"(source option download.deadline); {kept}. The server may be slow or "
                f"stalled: run again later, or raise download.deadline")


def _seconds(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class FileRecord:
    path: Path
    sha256: str
    size: int

    def as_json(self) -> dict:
        return {"sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class _Expected:
    """The sha256/size a file must have, and where they come from (for the error message)."""

    sha256: str | None
    size: int | None
    registry: ChecksumRegistry | None = None
    key: str | None = None  # the registry's entry for the file, if it has one

    @property
    def known(self) -> bool:
        return self.sha256 is not None

    def source(self) -> str:
        if self.key is None:
            return "by the caller"
        return f"by entry {self.key!r} of the checksum registry {self.registry.path}"

    def advice(self) -> str:
        if self.key is None:
            return "The download was deleted; run again to re-download it."
        return (f"If that entry is wrong (recorded from a damaged copy, or the file was "
                f"re-published), delete the entry from {self.registry.path} and run again; "
                f"otherwise the download was damaged and has been deleted: run again to "
                f"re-download it.")


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
    for the first time is verified as a whole (see the module docstring) and then added to
    the registry. An existing complete `dest` that matches is not fetched again.
    """
    dest = Path(dest)
    expected = _expected(url, sha256, size, registry)

    if dest.exists():
        record = _record_of(dest)
        if _matches(record, expected) and _sound_if_unknown(dest, expected):
            log.info("%s: already complete, skipped", dest)
            _register(registry, url, record, expected)
            return record
        log.warning("%s: present but does not match the registered checksum or cannot be "
                    "read; fetching again", dest)
        dest.unlink()

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"{url}: cannot create the folder {dest.parent} for the download: "
                            f"{error}") from None
    part = dest.with_name(dest.name + ".part")
    _fetch_with_retries(url, part, policy, _Deadline(url, policy, expected.size), progress)

    record = _record_of(part)
    _check_expected(record, expected, dest, url, part)
    if not expected.known:
        _verify_first_download(part, dest.name, url)
    try:
        os.replace(part, dest)
    except OSError as error:
        raise DownloadError(f"{url}: cannot rename {part} to {dest}: {error}") from None
    record = FileRecord(dest, record.sha256, record.size)
    _register(registry, url, record, expected)
    return record


def _expected(url: str, sha256: str | None, size: int | None,
              registry: ChecksumRegistry | None) -> _Expected:
    """The arguments, and the registry's entry for what they leave open."""
    found = registry.find(url) if registry is not None else None
    key, entry = found if found is not None else (None, {})
    return _Expected(sha256 or entry.get("sha256"),
                     size if size is not None else entry.get("size"), registry, key)


def _fetch_with_retries(url: str, part: Path, policy: RetryPolicy, deadline: _Deadline,
                        progress: bool) -> None:
    failures = 0
    while True:
        deadline.check(part)
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch_into(url, part, policy.timeout, progress, deadline)
            return
        except _Transient as error:
            gained = (part.stat().st_size if part.exists() else 0) > before
            failures = 0 if gained else failures + 1
            if failures > policy.retries:
                raise DownloadError(f"{url}: giving up after {policy.retries} retries: "
                                    f"{error}") from None
            delay = min(policy.backoff * 2 ** max(failures - 1, 0), policy.max_backoff)
            log.warning("%s: %s; retrying in %.2fs (%d/%d)", url, error, delay, failures,
                        policy.retries)
            time.sleep(max(0.0, min(delay, deadline.remaining())))


def _check_expected(record: FileRecord, expected: _Expected, dest: Path, url: str,
                    part: Path) -> None:
    if expected.size is not None and record.size != int(expected.size):
        part.unlink()
        raise ChecksumMismatch(f"{dest.name} ({url}): size {record.size} bytes, expected "
                               f"{expected.size} {expected.source()}. {expected.advice()}")
    if expected.sha256 is not None and record.sha256 != expected.sha256:
        part.unlink()
        raise ChecksumMismatch(f"{dest.name} ({url}): sha256 mismatch: expected "
                               f"{expected.sha256} {expected.source()}, got {record.sha256}. "
                               f"{expected.advice()}")


def _fetch_into(url: str, part: Path, timeout: float, progress: bool,
                deadline: _Deadline) -> None:
    """One attempt: append the missing bytes of `url` to `part`; raise _Transient on failure."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    # A read blocks at most this long, so the deadline is checked at least this often.
    read_timeout = max(0.01, min(timeout, deadline.remaining()))
    try:
        response = urllib.request.urlopen(request, timeout=read_timeout)
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
        deadline.learn_size(total)
        _write_stream(response, part, mode, url, deadline,
                      tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                           desc=part.name[:-5], disable=None if progress else True,
                           leave=False))
    received = part.stat().st_size
    if total is not None and received < total:
        raise _Transient(f"connection closed after {received} of {total} bytes")
    if total is not None and received > total:
        part.unlink()
        raise _Transient(f"received {received} bytes, more than the announced {total}")


def _write_stream(response: Any, part: Path, mode: str, url: str, deadline: _Deadline,
                  bar: tqdm) -> None:
    """Copy the response into `part`; a failed read is transient, a failed write is not."""
    # read1 returns what has arrived instead of waiting for a full chunk, so a trickling
    # server still lets the loop look at the deadline.
    read = getattr(response, "read1", response.read)
    step = "open"
    try:
        with bar, open(part, mode) as fh:
            step = "write to"
            while chunk := _read_chunk(read):
                fh.write(chunk)
                bar.update(len(chunk))
                deadline.check(part)
            step = "close"
    except OSError as error:
        raise DownloadError(
            f"{url}: cannot {step} the download file {part}: {error}. Free disk space or fix "
            f"the folder's permissions, then run again (the download resumes)") from None


def _read_chunk(read: Any) -> bytes:
    try:
        return read(_CHUNK)
    except (OSError, http.client.HTTPException) as error:
        raise _Transient(f"connection dropped: {type(error).__name__}: {error}") from None


def _total_from_content_range(value: str | None) -> int | None:
    match = _CONTENT_RANGE_TOTAL.search(value or "")
    return int(match.group(1)) if match else None


# Verification of a first download: is the content what its name says?

def content_problem(path: Path, name: str) -> str | None:
    """Why the file at `path`, published as `name`, cannot be read as its format; None when
    it reads to the end (or its format has no check)."""
    base = name[:-3] if name.endswith(".gz") else name
    try:
        if base.endswith(_JSON_LINES_SUFFIXES):
            _check_record_lines(path)
        elif parse.is_gzip(path):
            _check_gzip_stream(path)
        elif base.endswith(".b"):
            image_features_b.count_records(path)
    except ValueError as error:  # ParseError included
        return str(error)
    return None


def _check_record_lines(path: Path) -> None:
    """Every line decodes as a record the way crane.data.parse reads it (JSON, else a Python
    literal), within the parser's default share of malformed lines."""
    report = parse.ParseReport(path)
    for line_no, line in parse.iter_lines(path):  # the whole gzip stream, CRC included
        text = line.strip()
        if not text:
            continue
        report.lines += 1
        reason = _record_problem(text)
        if reason is not None:
            report.add_malformed(line_no, reason)
    if not report.lines:
        raise parse.ParseError(f"{path}: no records (the file is empty)")
    report.check(parse.DEFAULT_MAX_MALFORMED_SHARE)


def _record_problem(text: str) -> str | None:
    try:
        record = json.loads(text)
    except ValueError:
        try:
            record = ast.literal_eval(text)  # never eval: literals only
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as error:
            return f"{type(error).__name__}: {error}"[:200]
    if not isinstance(record, dict):
        return f"expected a mapping, got {type(record).__name__}"
    return None


def _check_gzip_stream(path: Path) -> None:
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(_CHUNK):
                pass
    except _GZIP_ERRORS as error:
        raise parse.ParseError(f"{path}: corrupt or truncated gzip data: {error}") from None


def _verify_first_download(part: Path, name: str, url: str) -> None:
    problem = content_problem(part, name)
    if problem is None:
        return
    part.unlink()
    raise DamagedDownload(
        f"{url}: the downloaded file is damaged and was deleted, nothing was recorded: "
        f"{problem}. Run again to re-download; if it fails the same way, the server's copy "
        f"is damaged")


def _sound_if_unknown(path: Path, expected: _Expected) -> bool:
    """A present file with nothing to compare against must at least read as its format."""
    if expected.known:
        return True
    problem = content_problem(path, path.name)
    if problem is not None:
        log.warning("%s: %s", path, problem)
    return problem is None


def _record_of(path: Path) -> FileRecord:
    return FileRecord(path, files.sha256_file(path), path.stat().st_size)


def _matches(record: FileRecord, expected: _Expected) -> bool:
    return ((expected.size is None or record.size == int(expected.size))
            and (expected.sha256 is None or record.sha256 == expected.sha256))


def _register(registry: ChecksumRegistry | None, url: str, record: FileRecord,
              expected: _Expected) -> None:
    if registry is not None and expected.key is None:
        registry.record(url, record.sha256, record.size)
