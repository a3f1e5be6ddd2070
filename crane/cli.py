"""`crane <step> ...`: one subcommand per pipeline step; the Snakemake rules call these.

Each module in `crane/commands/` contributes its subcommands through `register(subparsers)`,
and each subcommand sets `func` to a callable taking the parsed arguments.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

# Before torch loads OpenMP: idle threads sleep instead of spinning, which with several jobs
# on few cores would take the cores the other jobs' threads need.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import crane
import crane.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crane", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"crane {crane.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="STEP", required=True)
    for info in sorted(pkgutil.iter_modules(crane.commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"crane.commands.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # Input problems: one clear line naming the file/field, no traceback wall.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"crane {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
