"""`sortctl bench NAME [--quick] [--json FILE]`: run benchmarks, print a table, write records.

Each benchmark is a module ``benchmarks.<name>`` with ``run(quick: bool) -> list[Record]``; one
that draws a chart takes ``plot_path`` too (``--plot PATH``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
from pathlib import Path

from rich.console import Console

from benchmarks.records import Record, print_table, write_json

BENCHMARKS = ("routing", "vision", "sim", "e2e", "soak", "hmi", "relay", "capacity")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=[*BENCHMARKS, "all"], help="benchmark to run")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (well under a minute)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write records to FILE")
    parser.add_argument("--plot", type=Path, metavar="PATH",
                        help="write a PNG chart to PATH (benchmarks that draw one: capacity)")


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=False)
    names = BENCHMARKS if args.name == "all" else (args.name,)
    records: list[Record] = []
    failed: list[str] = []
    for name in names:
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"benchmarks.{name}":
                console.print(f"[yellow]benchmark {name}: not built yet, skipped[/]")
                continue
            raise
        try:
            plot = getattr(args, "plot", None)
            if plot is not None and "plot_path" in inspect.signature(module.run).parameters:
                got: list[Record] = module.run(quick=args.quick, plot_path=plot)
            else:
                got = module.run(quick=args.quick)
        except Exception as exc:  # a broken benchmark must not hide the others' figures
            console.print(f"[red]benchmark {name} failed: {exc!r}[/]")
            failed.append(name)
            continue
        print_table(f"{name} ({time.perf_counter() - t0:.1f} s)", got, console)
        records.extend(got)
    if args.json:
        write_json(args.json, records)
        console.print(f"wrote {len(records)} records to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(name="all", quick=True, json=None, plot=None)))
