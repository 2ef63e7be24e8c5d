"""``python -m cnflib.data download NAME... [--root DIR] [--record-checksum]`` and ``python -m cnflib.data list``."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from cnflib.data import download as dl


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (1 if any download failed)."""
    parser = argparse.ArgumentParser(prog="python -m cnflib.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("download", help="download, verify and unpack data sets")
    get.add_argument("names", nargs="+", metavar="NAME", choices=[*dl.NAMES, "all"],
                     help=f"one or more of: {', '.join(dl.NAMES)}, all")
    get.add_argument("--root", default=None, help=f"data directory (default: ${dl.ENV_VAR} or <repo>/data/raw)")
    get.add_argument("--record-checksum", action="store_true",
                     help="trust a file with no recorded digest and write the sha256 of every file into "
                          "cnflib/data/checksums.json (for committing)")
    get.add_argument("--no-progress", action="store_true", help="no progress bars")
    listing = commands.add_parser("list", help="the data sets, their sizes and whether they are present")
    listing.add_argument("--root", default=None)
    args = parser.parse_args(argv)

    if args.command == "list":
        print(f"data directory: {dl.data_dir(args.root)}")
        for name, dataset in dl.DATASETS.items():
            state = "present" if not dl.missing(name, args.root) else "missing"
            print(f"{name:10} {state:8} {dataset.size:38} {dataset.about}")
        return 0

    names = dl.NAMES if "all" in args.names else dict.fromkeys(args.names)
    failed: set[str] = set()  # resource paths; the five MAF sets share one archive, fetched (or failed) once
    for name in names:
        shared = {r.path for r in dl.DATASETS[name].resources} & failed
        if shared:
            print(f"{name}: FAILED: {', '.join(sorted(shared))} failed above", file=sys.stderr)
            continue
        try:
            files = dl.download(name, args.root, record_checksum=args.record_checksum, progress=not args.no_progress)
            print(f"{name}: ready ({len(files)} files in {dl.data_dir(args.root)})")
        except OSError as error:
            failed.update(r.path for r in dl.DATASETS[name].resources)
            print(f"{name}: FAILED: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
