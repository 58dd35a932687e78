"""The `pyfastdl` command line."""

from __future__ import annotations

import argparse
import json

from . import bench


def _cmd_info(args) -> int:
    from .info import collect, format_info

    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="pyfastdl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pyfastdl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="version, compiled kernels, threads and GPUs")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info)
    bench.add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
