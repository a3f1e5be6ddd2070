"""Fill the raw image cache `raw/images/<asin>.<ext>` from each item's `image_url`.

Resumable: an item with any cached file is skipped, and files appear only when complete
(crane.data.download streams into `.part` and renames). A few threads fetch in parallel
(the work is waiting on the network). Failures (404, retries exhausted, not an image) are
listed in the report and never stop the run: the encoders impute those items.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm import tqdm

from crane.data.download import DownloadError, RetryPolicy, download
from crane.features.image_files import find_cached_images

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
UNKNOWN_SUFFIX = ".img"  # PIL reads by content, the suffix is only for people
DEFAULT_WORKERS = 8
DEFAULT_POLICY = RetryPolicy(retries=3, backoff=0.5, max_backoff=8.0, timeout=30.0)
_SAFE_ASIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass
class FetchReport:
    downloaded: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    no_url: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # asin -> reason

    def as_json(self) -> dict:
        return {"downloaded": len(self.downloaded), "cached": len(self.cached),
                "no_url": sorted(self.no_url), "failed": dict(sorted(self.failed.items()))}


def image_suffix(url: str) -> str:
    suffix = Path(urllib.parse.urlparse(url).path).suffix.lower()
    return suffix if suffix in IMAGE_SUFFIXES else UNKNOWN_SUFFIX


def fetch_one(url: str, dest: Path, policy: RetryPolicy) -> str | None:
    """Download `url` to `dest` and check it decodes as an image; the failure reason or None."""
    try:
        download(url, dest, policy=policy, progress=False)
    except (DownloadError, OSError) as error:
        return str(error)
    try:
        with Image.open(dest) as image:
            image.verify()  # header and structure; cheap, no full decode
    except Exception as error:  # PIL raises many types for a broken file
        dest.unlink(missing_ok=True)
        return f"{url}: not a readable image ({type(error).__name__}: {error})"
    return None


def fetch_images(items: pd.DataFrame, image_dir: str | os.PathLike,
                 workers: int = DEFAULT_WORKERS, policy: RetryPolicy = DEFAULT_POLICY,
                 progress: bool = True) -> FetchReport:
    """Download every item's `image_url` not yet in `image_dir`; see the module doc."""
    for column in ("asin", "image_url"):
        if column not in items.columns:
            raise ValueError(f"items: no column {column!r} (have {list(items.columns)})")
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    cached = find_cached_images(image_dir)
    report = FetchReport()
    todo: list[tuple[str, str, Path]] = []
    urls = items["image_url"].where(items["image_url"].notna(), "").astype(str).str.strip()
    for asin, url in zip(items["asin"].astype(str), urls):
        if asin in cached:
            report.cached.append(asin)
        elif not url:
            report.no_url.append(asin)
        elif not _SAFE_ASIN.match(asin):
            report.failed[asin] = f"asin {asin!r} is not usable as a file name"
        else:
            todo.append((asin, url, image_dir / f"{asin}{image_suffix(url)}"))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(todo), desc="images", unit="img", mininterval=2.0,
                 disable=None if progress else True) as bar:
        results = pool.map(lambda job: fetch_one(job[1], job[2], policy), todo)
        for (asin, _, _), failure in zip(todo, results):
            if failure is None:
                report.downloaded.append(asin)
            else:
                report.failed[asin] = failure
            bar.update()
    log.info("images: %d downloaded, %d cached, %d without url, %d failed",
             len(report.downloaded), len(report.cached), len(report.no_url), len(report.failed))
    return report
