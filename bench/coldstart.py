"""Cold start: ``hivekit --help`` against ``python -c 'import click'``."""

from __future__ import annotations

import subprocess
import sys

from bench.common import Result, median_time


def run(quick: bool = False) -> Result:
    repeat = 3 if quick else 15
    result = Result("cold start")

    def hivekit_help() -> None:
        subprocess.run([sys.executable, "-m", "hivekit", "--help"], check=True,
                       capture_output=True)

    def import_click() -> None:
        subprocess.run([sys.executable, "-c", "import click"], check=True, capture_output=True)

    result.add("hivekit --help", median_time(hivekit_help, repeat),
               median_time(import_click, repeat), target=1.5)
    return result
