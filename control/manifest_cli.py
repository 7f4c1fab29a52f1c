"""`sortctl manifest add FILE`: pre-advice rows for the running service (same header as the
manifest file). Rows are checked one by one; the answer says how many were added, how many were
rejected and the first bad lines, and which parcels were already pre-advised."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from control.send import add_common, send
from plant.errors import ConfigError
from plant.yamlfile import read_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["add"])
    parser.add_argument("file", type=Path, help="CSV with the manifest header")
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    try:
        text = read_text(args.file)
    except ConfigError as exc:
        print(f"sortctl manifest: {exc}", file=sys.stderr)
        return 2
    return send(args, "MANIFEST_ADD", {"csv": text, "source": args.file.name})
