"""Cold start: ``hivekit --help`` and ``hivekit agents`` (against a running daemon) against
``python -c 'import click'``, interleaved (click, help, agents, click, help, agents...).

The commands run as an operator runs them: the ``hivekit`` console script of this environment,
with the record of an earlier run in place (:mod:`hivekit.clicache`, in a directory of this
bench's own). What the first run costs, with no record, is reported beside them.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Result, load_average, ratio_range, short_tmp


def run(quick: bool = False) -> Result:
    from hivekit.testing import HiveProcess

    rounds = 3 if quick else 20
    result = Result("cold start")
    root = short_tmp()
    script = Path(sys.executable).with_name("hivekit")
    hivekit = [str(script)] if script.exists() else [sys.executable, "-m", "hivekit"]
    cache = root / "cache"
    with HiveProcess(root / "h") as hive:
        env = {**hive.env, "HIVEKIT_CACHE_DIR": str(cache)}

        def timed(argv: list[str]) -> float:
            t = time.perf_counter()
            proc = subprocess.run(argv, cwd=hive.root, env=env, capture_output=True)
            elapsed = time.perf_counter() - t
            assert proc.returncode == 0, proc.stderr.decode()[-2000:]
            return elapsed

        first = []
        for _ in range(2 if quick else 5):  # no record: the full work, then it is written
            shutil.rmtree(cache, ignore_errors=True)
            first.append(timed([*hivekit, "--help"]))
        timed([*hivekit, "agents"])
        times: dict[str, list[float]] = {"click": [], "help": [], "agents": []}
        argvs = {"click": [sys.executable, "-c", "import click"],
                 "help": [*hivekit, "--help"], "agents": [*hivekit, "agents"]}
        for argv in argvs.values():  # warm the page cache
            timed(argv)
        for _ in range(rounds):
            for key, argv in argvs.items():
                times[key].append(timed(argv))
    med = {k: statistics.median(v) for k, v in times.items()}
    result.add("hivekit --help", med["help"], med["click"], target=1.5)
    result.add("hivekit agents (a running daemon)", med["agents"], med["click"], target=2.0)
    result.add("first run of hivekit --help, no record yet", statistics.median(first),
               med["click"])
    result.notes.append(
        f"{rounds} interleaved rounds, medians; per-round ratios: --help "
        f"{ratio_range(times['help'], times['click'])}, agents "
        f"{ratio_range(times['agents'], times['click'])}; {' '.join(hivekit[:1])}; load "
        f"average at the end {load_average()}")
    return result
