"""`crane fetch-images`, `crane features`, `crane graphs`: item features and their kNN caches."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from crane import files
from crane.commands._spec import add_spec_argument
from crane.modalities import MODALITIES

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
    features.add_argument("--modality", required=True, choices=list(MODALITIES))
    features.add_argument("--encoder", required=True, help="encoder name (config `encoders:`)")
    add_spec_argument(features, help_text="the encoder's config (JSON, or @file); its "
                      "max_missing_share (default 0.05) is the largest share of items "
                      "allowed to have no input")
    features.add_argument("--out", required=True, type=Path,
                          help="output folder, e.g. results/<ds>/features/<modality>-<encoder>")
    features.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    features.set_defaults(func=run_features)

    graphs = subparsers.add_parser(
        "graphs", help="build item kNN neighbour caches keyed by feature content hash")
    graphs.add_argument("--feature", required=True, action="append", dest="features",
                        metavar="MODALITY=DIR", help="a modality's feature folder (repeatable)")
    graphs.add_argument("--k", type=int, required=True, help="neighbours per item")
    graphs.add_argument("--mean-cosine", action="store_true",
                        help="one graph of the mean per-modality cosine of all the features "
                             "(ItemKNN-CBF's) instead of one graph per modality")
    graphs.add_argument("--out", required=True, type=Path, help="cache folder")
    graphs.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    graphs.add_argument("--index", type=Path,
                        help="also write JSON: graph name -> cache file, k, content hash")
    graphs.set_defaults(func=run_graphs)


def run_fetch_images(args: argparse.Namespace) -> int:
    from crane.data.download import RetryPolicy
    from crane.features.extract import read_items
    from crane.features.image_fetch import DEFAULT_POLICY, fetch_images
    from crane.data.raw_images import images_dir

    policy = RetryPolicy(retries=args.retries, backoff=DEFAULT_POLICY.backoff,
                         max_backoff=DEFAULT_POLICY.max_backoff, timeout=DEFAULT_POLICY.timeout)
    report = fetch_images(read_items(args.data), images_dir(args.raw), workers=args.workers,
                          policy=policy)
    if args.report:
        files.write_json(args.report, report.as_json())
    return 0


def run_features(args: argparse.Namespace) -> int:
    from crane.features.extract import extract_features

    feature_set = extract_features(args.data, args.raw, args.modality, args.encoder, args.spec,
                                   args.out, device=args.device)
    manifest = feature_set.manifest
    imputed = manifest["imputed"]
    print(f"{args.out}: {manifest['n_items']} x {manifest['dim']}, {imputed['count']} imputed "
          f"({imputed['share']:.1%}), {manifest['distinct_rows']} distinct rows, "
          f"content_hash {manifest['content_hash'][:12]}")
    return 0


def run_graphs(args: argparse.Namespace) -> int:
    from crane.commands._spec import parse_feature_dirs
    from crane.device import resolve_device
    from crane.features.store import load_features
    from crane.graphs.item_knn import build_graph
    from crane.graphs.plan import MEAN_COSINE, KnnGraph

    device = resolve_device(args.device)
    features = {}
    for modality, feature_dir in parse_feature_dirs(args.features).items():
        feature_set = load_features(feature_dir)  # verifies the content hash
        features[modality] = (feature_set.features, feature_set.content_hash)
    sources = [MEAN_COSINE] if args.mean_cosine else sorted(features)
    index = {}
    for source in sources:
        started = time.perf_counter()
        record = build_graph(KnnGraph(source, args.k), features, args.out, device)
        log.info("%s: k=%d neighbours in %s (%.1fs)", source, args.k, record["cache"],
                 time.perf_counter() - started)
        print(record["cache"])
        index[record["graph"]] = record
    if args.index:
        files.write_json(args.index, index)
    return 0
