"""Atomic writes and content hashes: every artifact of the pipeline goes through here.

A reader must never see a half-written file, and an interrupted job must leave either the old
file or nothing. So we write to a temporary file in the destination folder and `os.replace`
it into place (atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

_CHUNK = 1 << 20


class WriteError(OSError):
    """Writing an artifact failed; the message names the path and the operation."""


# The errors of a full disk, a quota or a missing permission (a missing input file is not one).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}


def _is_write_failure(error: BaseException) -> bool:
    # torch.save reports a short write (a full disk) as a RuntimeError: "unexpected pos ..."
    # or "... failed writing file ..."; other RuntimeErrors are not about the disk.
    return (isinstance(error, OSError) and error.errno in _WRITE_ERRNOS) or (
        isinstance(error, RuntimeError)
        and any(s in str(error) for s in ("unexpected pos", "failed writing", "file write failed")))


def _write_error(operation: str, path: Path, error: BaseException) -> WriteError:
    hint = ""
    try:
        free = shutil.disk_usage(path.parent if path.parent.exists() else ".").free
        hint = f"; {free / 2**20:.0f} MiB free on that filesystem"
    except OSError:
        pass
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    failure = WriteError(f"{operation} {path} failed: {reason}{hint} (a full disk or a "
                         f"missing write permission: free space or fix the permission, then "
                         f"rerun)")
    failure.errno = getattr(error, "errno", None) or errno.ENOSPC
    return failure


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success move it onto `path`.

    The temporary keeps the destination's suffix (or `suffix`) so that libraries which
    choose a format by extension (numpy, pandas, torch) behave as for the final name. A failed
    write (full disk, no permission) is a WriteError naming `path`.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}",
                                   dir=path.parent)
        os.close(fd)
    except OSError as error:
        raise _write_error("creating a file next to", path, error) from error
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the file the permissions a plain open() would (umask),
        # so that a group can read results on a shared cluster filesystem.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException as error:
        tmp_path.unlink(missing_ok=True)
        if _is_write_failure(error) and not isinstance(error, WriteError):
            raise _write_error("writing", path, error) from error
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success it replaces `path` whole."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as error:
        raise _write_error("creating a folder next to", path, error) from error
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_write_failure(error) and not isinstance(error, WriteError):
            raise _write_error("writing into", path, error) from error
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_array(array: np.ndarray) -> str:
    """Hash of an array's dtype, shape and bytes: equal hashes mean equal content."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}|{array.shape}|".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Stable hash of a JSON-able object (sorted keys): used for hyper-parameter keys."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()
