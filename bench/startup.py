"""CLI start-up: wall time and import time of ``imagegen --help`` and ``imagegen status``, with
``python -c pass`` and ``celery --help`` measured in the same run as baselines.

Every command runs ``--runs`` times, each in a fresh process, round-robin (so a busy moment of a shared
machine hits every command alike), after one unmeasured warm-up run each; medians are reported. Wall
and CPU (user + system) time are of a plain run; import time is the sum of the self times
``python -X importtime`` reports in a second run (every module the process imported, the
interpreter's own start-up included). On a shared machine CPU time is the steadiest of the three.
``imagegen status`` asks for a job that does not exist in a private SQLite database whose schema is
current (exit 2: the answer a typo gets). ``--compare PATH`` also runs the imagegen commands from
another checkout (e.g. a ``git worktree`` of an older commit) with the same interpreter and packages,
interleaved with this one's.

    python -m bench.startup [--runs 7] [--compare /tmp/startup-before]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MISSING_JOB = "00000000-0000-4000-8000-000000000000"
_SELF_US = re.compile(r"^import time:\s+(\d+) \|")


@dataclass
class Command:
    """One command line to time: ``python [-X importtime] -m <argv>`` in ``tree``, expecting ``code``."""

    label: str
    argv: list[str]
    code: int = 0
    tree: Path = ROOT
    home: Path | None = None
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    imports: list[float] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGEN_", "DATABASE_URL", "PYTHON"))}
        env["PYTHONPATH"] = str(self.tree)  # this tree's packages before the installed (editable) ones
        if self.home is not None:
            env["IMAGEGEN_HOME"] = str(self.home)
        return env

    def run(self, *, importtime: bool) -> subprocess.CompletedProcess[str]:
        flags = ["-X", "importtime"] if importtime else []
        done = subprocess.run(
            [sys.executable, *flags, *self.argv], cwd=self.tree, env=self.env(), capture_output=True, text=True
        )
        if done.returncode != self.code:
            raise SystemExit(f"{self.label}: exit {done.returncode}, expected {self.code}\n{done.stderr[-2000:]}")
        return done

    def measure(self) -> None:
        before, begin = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        self.run(importtime=False)
        self.walls.append(time.perf_counter() - begin)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        stderr = self.run(importtime=True).stderr
        self.imports.append(sum(int(m[1]) for line in stderr.splitlines() if (m := _SELF_US.match(line))) / 1e6)

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)

    @property
    def imported(self) -> float:
        return statistics.median(self.imports)


def imagegen_commands(tree: Path, home: Path, suffix: str = "") -> list[Command]:
    """``imagegen --help`` and ``imagegen status <missing id>`` from ``tree``, its database under ``home``."""
    cli = ["-m", "imagegen.cli.main"]
    upgrade = Command("db upgrade", [*cli, "db", "upgrade"], tree=tree, home=home)
    upgrade.run(importtime=False)  # status then finds a current schema, as every run but the first does
    return [
        Command(f"imagegen --help{suffix}", [*cli, "--help"], tree=tree),
        Command(f"imagegen status <missing>{suffix}", [*cli, "status", MISSING_JOB], code=2, tree=tree, home=home),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per command (median reported)")
    parser.add_argument("--compare", type=Path, default=None, help="another checkout to time the same way")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        commands = [Command("python -c pass", ["-c", "pass"]), Command("celery --help", ["-m", "celery", "--help"])]
        commands += imagegen_commands(ROOT, Path(tmp) / "this")
        if args.compare is not None:
            commands += imagegen_commands(args.compare.resolve(), Path(tmp) / "compare", " (compare)")
        for command in commands:  # unmeasured: compiles a fresh tree's .pyc files, warms the page cache
            command.run(importtime=False)
        for _ in range(max(args.runs, 1)):
            for command in commands:
                command.measure()
    celery = commands[1]
    print(f"{args.runs} fresh processes per command, medians; python {sys.version.split()[0]}")
    if args.compare is not None:
        print(f"this tree: {ROOT}; compare: {args.compare}")
    ratio = "vs celery"
    print(f"{'command':36} {'wall ms':>8} {ratio:>10} {'cpu ms':>7} {ratio:>10} {'imports ms':>11} {ratio:>10}")
    for c in commands:
        print(
            f"{c.label:36} {c.wall * 1e3:8.0f} {c.wall / celery.wall:9.2f}x "
            f"{c.cpu * 1e3:7.0f} {c.cpu / celery.cpu:9.2f}x "
            f"{c.imported * 1e3:11.0f} {c.imported / celery.imported:9.2f}x"
        )
    if args.compare is not None:
        print()
        for this, other in zip(commands[2:4], commands[4:6], strict=True):
            print(
                f"{this.label} / compare: wall {this.wall / other.wall:.2f}x, cpu {this.cpu / other.cpu:.2f}x, "
                f"imports {this.imported / other.imported:.2f}x"
            )


if __name__ == "__main__":
    main()
