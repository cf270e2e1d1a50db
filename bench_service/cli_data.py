"""``bench data``: fetch the real data sets once (checksummed) and say where they are."""

from __future__ import annotations

import argparse
import sys


def cmd_data(args: argparse.Namespace) -> int:
    """``bench data list`` shows every data set and whether it is there; ``bench data fetch
    NAME...`` downloads, checks (published MD5) and unpacks them into ``$BENCH_DATA_DIR``."""
    from bench_service.engine.datasets import SOURCES, data_dir, fetch, get_source

    if args.data_command == "list":
        print(f"data directory: {data_dir()}  (set $BENCH_DATA_DIR to move it)")
        for name, source in SOURCES.items():
            state = "present" if not source.missing() else "missing"
            print(f"  {name:<10} {state:<8} {source.path()}  ({source.homepage})")
        return 0
    names = list(SOURCES) if "all" in args.names else args.names
    for name in names:
        get_source(name)  # an unknown name is refused before anything downloads
    for name in names:
        def say(line: str, prefix: str = name) -> None:
            print(f"{prefix}: {line}", file=sys.stderr)

        print(f"{name}: ready at {fetch(name, say=say)}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``bench data`` sub-commands (kept here so ``cli.py`` holds one line for them)."""
    data = sub.add_parser("data", help="fetch the real data sets (MNIST, Fashion-MNIST, CIFAR)")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    fetch = data_sub.add_parser("fetch", help="download and checksum data sets once")
    fetch.add_argument("names", nargs="+", metavar="NAME",
                       help="mnist, fmnist, cifar10, cifar100 or all")
    data_sub.add_parser("list", help="where each data set is and whether it is there")
