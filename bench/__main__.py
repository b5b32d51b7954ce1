"""python -m bench [NAME ...] [--quick] [--json FILE]: run benchmarks, print tables, write JSON.

Targets are reported, never asserted: CI runs ``--quick`` so the scripts cannot rot.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

BENCHES = ["deploy", "state", "broker", "events", "coldstart", "growth", "idle", "meta"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHES, []], metavar="NAME",
                        help=f"which to run (default: all): {', '.join(BENCHES)}")
    parser.add_argument("--quick", action="store_true", help="small sizes (for CI)")
    parser.add_argument("--json", type=Path, help="write results to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    from bench.common import write_json

    results = []
    for name in args.names or BENCHES:
        module = importlib.import_module(f"bench.{name}")
        result = module.run(quick=args.quick)
        result.print()
        results.append(result)
    write_json(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
