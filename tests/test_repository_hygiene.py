"""Repository hygiene: no absolute machine path and no working-log wording in tracked files.

A path into one machine's home, scratch or work folder means nothing on another machine, and a
document or comment that dates itself by the working period it was written in ("the fifth ...")
goes stale the day it is committed. Every text file that git tracks is scanned. The patterns
are tested on examples first, so the scan cannot pass by matching nothing.

Each pattern keeps one character in brackets (`wor[k]`) and every example below is built from
pieces, so that this file's own source never matches.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Where a path starts: not inside a URL, a relative path (../x/work/) or a variable ($HOME/work/).
_PATH_START = r"(?<![\w.~/$-])"
ABSOLUTE_MACHINE_PATH = re.compile(
    _PATH_START + r"/(?:wor[k]|roo[t])/"               # this kind of machine's work and root homes
    + "|" + _PATH_START + r"/(?:hom[e]|User[s])/[\w.-]+/"  # a user's home (Linux, macOS)
    + "|" + _PATH_START + r"/tm[p]/[\w.-]"             # a fixed file or folder in the temp folder
    + r"|\b[A-Za-z]:\\User[s]\\")                      # a user's home (Windows)

_ORDINALS = r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|\d+(?:st|nd|rd|th)"
WORKING_SESSION = re.compile(
    r"\b(?:this|that|previous|next|last|earlier|later|current|working|" + _ORDINALS
    + r")\s+sessio[n]s?\b"
    + r"|\bother\s+sessio[n]s'"
    + r"|\bsessio[n]s?[ -](?:\d+\b|start\b)",
    re.IGNORECASE)


def test_the_path_pattern_flags_machine_paths_and_nothing_else():
    flagged = [
        "reconstruction specified in /wor" + "k/shared/docs/crane-method.md, section by section",
        'DEFAULT = Path("/wor' + 'k/main/results")',
        "cat /ho" + "me/alice/data/ratings.csv",
        "open('/Us" + "ers/bob/Downloads/x.npy')",
        "python benchmarks/run.py --out /tm" + "p/b5",
        "--results /tm" + "p/base/results",
        "~ is /ro" + "ot/.cache here",
        "C:\\Us" + "ers\\carol\\crane",
    ]
    kept = [
        "def test_x(tmp_path): (tmp_path / 'a').write_text('b')",
        "the weights in https://example.org/wo" + "rk/page and http://host/tm" + "p/file",
        "the reference folder ../shared/data/amazon2014-baby/mmrec-split",
        "writes /etc/slurm/slurm.conf; logs to /dev/null",
        "Layout of `<results>/<dataset>/data/`",
        "cp -r $HOME/wo" + "rk/x .",
        "scratch=$(mktemp -d)",
    ]
    assert [line for line in flagged if not ABSOLUTE_MACHINE_PATH.search(line)] == []
    assert [line for line in kept if ABSOLUTE_MACHINE_PATH.search(line)] == []


def test_the_session_pattern_flags_working_log_wording_and_nothing_else():
    flagged = [
        "measured on the fifth " + "session's code",
        "This " + "session's hand-written backward passes",
        "the previous " + "session gave 0.1805",
        "(other " + "sessions' jobs; wall times were twice)",
        "equal the session" + "-start code's",
        "Sess" + "ion 3 measured it",
        "the 4th\n" + "session",
    ]
    kept = [
        '@pytest.fixture(scope="session")',
        "subprocess.Popen(cmd, start_new_session=True)",
        "each in its own session, so that a teardown can stop them",
        "it has to outlive your SSH session",
        "for example the login session closed",
    ]
    assert [line for line in flagged if not WORKING_SESSION.search(line)] == []
    assert [line for line in kept if WORKING_SESSION.search(line)] == []


def tracked_text_files() -> dict[str, str]:
    """Every file git tracks that exists and reads as UTF-8 text without NUL bytes."""
    try:
        listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git checkout, nothing to scan: {error}")
    texts = {}
    for name in listing.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue  # deleted in the working tree, or a submodule
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            texts[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def _findings(pattern: re.Pattern, texts: dict[str, str]) -> list[str]:
    found = []
    for name, text in sorted(texts.items()):
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{name}:{line}: {match.group(0)!r}")
    return found


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    texts = tracked_text_files()
    assert {"README.md", "crane/__init__.py", "tests/test_repository_hygiene.py"} <= set(texts)
    return texts


def test_no_tracked_file_names_an_absolute_machine_path(texts):
    assert _findings(ABSOLUTE_MACHINE_PATH, texts) == []


def test_no_tracked_file_speaks_of_working_sessions(texts):
    assert _findings(WORKING_SESSION, texts) == []
