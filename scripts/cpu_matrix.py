"""Run the test suite under every CPU setting that changes float32 results, and print one table.

Float32 kernels choose their blocking per instruction set, thread count and batch size, so a test
that compares two runs must hold under each. This runs the README's test selection (or the paths
given) once per setting:

* ``ATEN_CPU_CAPABILITY`` = ``default`` (no SIMD), ``avx2``, and ``avx512`` where the CPU has it;
* ``OMP_NUM_THREADS`` = 1 and 2;
* denormals flushed to zero (``T2C_FLUSH_DENORMAL=1``, read by tests/conftest.py) on one setting.

    python scripts/cpu_matrix.py                      # the whole matrix (about 10 min a run on 2 cores)
    python scripts/cpu_matrix.py tests/aligners       # only these tests
    python scripts/cpu_matrix.py --list               # the settings this CPU gets, and nothing run

Each run's pytest summary line goes to the table; the exit status is 1 if any run failed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ["tests", "plugins/t2c-procrustes/tests", "plugins/t2c-world-probes/tests"]


@dataclass(frozen=True)
class Setting:
    capability: str
    threads: int
    flush_denormal: bool = False

    @property
    def label(self) -> str:
        flush = ", denormals flushed" if self.flush_denormal else ""
        return f"ATEN_CPU_CAPABILITY={self.capability}, {self.threads} thread(s){flush}"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ, ATEN_CPU_CAPABILITY=self.capability, OMP_NUM_THREADS=str(self.threads))
        env.update(MKL_NUM_THREADS=str(self.threads), PYTHONHASHSEED="0", HF_HUB_OFFLINE="1")
        env.pop("T2C_FLUSH_DENORMAL", None)  # only the setting that asks for it flushes
        if self.flush_denormal:
            env["T2C_FLUSH_DENORMAL"] = "1"
        return env


def cpu_flags() -> set[str]:
    """The CPU's flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    found = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    return set(found.group(1).split()) if found else set()


def settings(flags: set[str]) -> list[Setting]:
    """Every capability this CPU can run, with 1 and 2 threads; the widest with denormals flushed."""
    capabilities = ["default"] + (["avx2"] if "avx2" in flags else [])
    capabilities += ["avx512"] if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags else []
    runs = [Setting(c, t) for c in capabilities for t in (1, 2)]
    return runs + [Setting(capabilities[-1], 2, flush_denormal=True)]


def run(setting: Setting, paths: list[str], extra: list[str]) -> tuple[int, str, float]:
    """One pytest run: exit status, its summary line and seconds."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths, *extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=setting.environment(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    tail = lines or done.stderr.strip().splitlines() or ["no output"]
    summary = tail[-1].strip("= ")
    if done.returncode != 0:
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
        print("\n".join(failed[:20]) or done.stderr[-2000:], flush=True)
    return done.returncode, summary, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("paths", nargs="*", help="test paths (default: the README's selection)")
    parser.add_argument("--list", action="store_true", help="print the settings and run nothing")
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments, one string")
    args = parser.parse_args(argv)
    flags = cpu_flags()
    simd = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    print(f"CPU flags: {' '.join(simd) or 'none of avx/fma/amx'}", flush=True)
    matrix = settings(flags)
    if args.list:
        print("\n".join(s.label for s in matrix))
        return 0
    failures = 0
    rows = []
    for setting in matrix:
        print(f"running: {setting.label}", flush=True)
        status, summary, seconds = run(setting, args.paths or SUITE, args.pytest_args.split())
        failures += status != 0
        result = "pass" if status == 0 else "FAIL"
        rows.append(f"| {setting.label} | {result} | {summary} | {seconds:.0f} s |")
    print("\n| setting | result | pytest | time |\n| --- | --- | --- | ---: |\n" + "\n".join(rows))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
