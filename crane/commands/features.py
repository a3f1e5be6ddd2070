"""`crane fetch-images`, `crane features`, `crane graphs`: item features and their kNN caches."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from crane import files
from crane.commands._spec import add_spec_argument

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    fetch = subparsers.add_parser(
        "fetch-images", help="download item images into the raw image cache (resumable)")
    fetch.add_argument("--data", required=True, type=Path, help="processed data folder")
    fetch.add_argument("--raw", required=True, type=Path,
                       help="raw folder; images go to RAW/images/<asin>.<ext>")
    fetch.add_argument("--workers", type=int, default=8, help="parallel downloads")
    fetch.add_argument("--retries", type=int, default=3, help="retries per image")
    fetch.add_argument("--report", type=Path,
                       help="write counts and failed items (asin -> reason) as JSON here")
    fetch.set_defaults(func=run_fetch_images)

    features = subparsers.add_parser(
        "features", help="encode every item with one encoder: features.npy + manifest.json")
    features.add_argument("--data", required=True, type=Path, help="processed data folder")
    features.add_argument("--raw", required=True, type=Path,
                          help="raw folder (image cache, .b / MMRec feature files)")
    features.add_argument("--modality", required=True, choices=["text", "image"])
    features.add_argument("--encoder", required=True, help="encoder name (config `encoders:`)")
    add_spec_argument(features, help_text="the encoder's config (JSON, or @file)")
    features.add_argument("--out", required=True, type=Path,
                          help="output folder, e.g. results/<ds>/features/<modality>-<encoder>")
    features.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    features.set_defaults(func=run_features)

    graphs = subparsers.add_parser(
        "graphs", help="precompute item kNN neighbour caches keyed by feature content hash")
    graphs.add_argument("--feature", required=True, action="append", type=Path,
                        dest="features", help="feature folder (repeatable)")
    graphs.add_argument("--k", type=int, default=10, help="neighbours per item")
    graphs.add_argument("--out", required=True, type=Path, help="cache folder")
    graphs.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    graphs.add_argument("--index", type=Path,
                        help="also write JSON: feature folder -> cache file, content hash")
    graphs.set_defaults(func=run_graphs)


def run_fetch_images(args: argparse.Namespace) -> int:
    from crane.data.download import RetryPolicy
    from crane.features.extract import read_items
    from crane.features.image_fetch import DEFAULT_POLICY, fetch_images
    from crane.features.image_files import images_dir

    policy = RetryPolicy(retries=args.retries, backoff=DEFAULT_POLICY.backoff,
                         max_backoff=DEFAULT_POLICY.max_backoff, timeout=DEFAULT_POLICY.timeout)
    report = fetch_images(read_items(args.data), images_dir(args.raw), workers=args.workers,
                          policy=policy)
    if args.report:
        files.write_json(args.report, report.as_json())
    return 0


def run_features(args: argparse.Namespace) -> int:
    from crane.features import extract_features

    feature_set = extract_features(args.data, args.raw, args.modality, args.encoder, args.spec,
                                   args.out, device=args.device)
    manifest = feature_set.manifest
    print(f"{args.out}: {manifest['n_items']} x {manifest['dim']}, "
          f"{manifest['imputed']['count']} imputed, content_hash {manifest['content_hash'][:12]}")
    return 0


def run_graphs(args: argparse.Namespace) -> int:
    from crane.features import load_features
    from crane.features.extract import resolve_device
    from crane.graphs.item_knn import cached_neighbours, graph_cache_path

    device = resolve_device(args.device)
    index = {}
    for feature_dir in args.features:
        feature_set = load_features(feature_dir)  # verifies the content hash
        started = time.perf_counter()
        cached_neighbours(feature_set.features, args.k, args.out, feature_set.content_hash,
                          device=device)
        path = graph_cache_path(args.out, feature_set.content_hash, args.k)
        log.info("%s: k=%d neighbours in %s (%.1fs)", feature_dir, args.k, path,
                 time.perf_counter() - started)
        print(path)
        index[str(feature_dir)] = {"cache": str(path), "k": args.k,
                                   "content_hash": feature_set.content_hash}
    if args.index:
        files.write_json(args.index, index)
    return 0
