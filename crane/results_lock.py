"""One writer per results folder: a lock file that a second checkout (or a second workflow
from another working directory) cannot take while the first is running.

Snakemake locks its own working directory only (`.snakemake/locks`), so two checkouts whose
configs name one results folder would otherwise write the same runs and overwrite each
other's logs. The workflow takes this lock before its first job (`onstart`) and gives it back
when it ends (`onsuccess` / `onerror`). A lock left by a process that no longer runs on this
host (kill -9, a crash) is stale and taken over with a warning; one from another host cannot
be checked and is refused, naming the file to delete when no run is active there.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".crane-lock.json"


class ResultsLocked(RuntimeError):
    """Another workflow is writing the results folder."""


def lock_path(results: str | Path) -> Path:
    return Path(results) / LOCK_NAME


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def _owner(checkout: str | Path) -> dict:
    return {"checkout": str(Path(checkout).resolve()), "host": socket.gethostname(),
            "pid": os.getpid()}


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treated as held by an unknown owner


def acquire(results: str | Path, checkout: str | Path) -> Path:
    """Take the lock of `results` for the workflow of `checkout`; return its path.

    The same checkout may take it again (Snakemake's own lock already keeps two workflows of
    one working directory apart, and a rerun after a crash must not be refused)."""
    path = lock_path(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = _owner(checkout)
    for _ in range(2):
        try:
            with open(path, "x", encoding="utf-8") as handle:
                json.dump(me, handle)
            return path
        except FileExistsError:
            held = _read(path)
        if held is None:
            continue  # released between our two calls: try again
        if held.get("checkout") == me["checkout"] and held.get("host") == me["host"]:
            path.write_text(json.dumps(me), encoding="utf-8")
            return path
        same_host = held.get("host") == me["host"]
        if same_host and isinstance(held.get("pid"), int) and not _alive(held["pid"]):
            log.warning("%s: taking over a stale lock of %s (process %s no longer runs)",
                        path, held.get("checkout"), held.get("pid"))
            path.write_text(json.dumps(me), encoding="utf-8")
            return path
        raise ResultsLocked(
            f"{path}: the results folder is being written by the workflow of "
            f"{held.get('checkout', 'an unknown checkout')} (host {held.get('host', '?')}, "
            f"process {held.get('pid', '?')}). Wait for it to finish, or give this study another "
            f"`results:` folder; if no workflow is running there, delete {path}.")
    raise ResultsLocked(f"{path}: could not take the lock")


def release(results: str | Path, checkout: str | Path) -> None:
    """Give the lock back if this checkout holds it (another's lock is left alone)."""
    path = lock_path(results)
    held = _read(path)
    if held and held.get("checkout") == _owner(checkout)["checkout"]:
        path.unlink(missing_ok=True)
