"""Run the authpulse benchmark suite.

    python benchmarks/run.py            # full run (about a minute or two)
    python benchmarks/run.py --quick    # small counts, a few seconds: a smoke run
    python benchmarks/run.py --only stampede stall

Prints one markdown table per benchmark and writes them, with a header naming
the machine, to ``benchmarks/results/latest.md`` (and the raw figures to
``latest.json``). These are measurements, not tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (
    idp,
    logins,
    loop_gap,
    million,
    overhead,
    resilience,
    sessions,
    stale,
    stall,
    stampede,
    stores,
)
from benchmarks._common import TOKEN_LATENCY, Section, load_average, machine_info

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Scale:
    """Iteration counts of one run."""

    overhead_blocks: int
    overhead_per_block: int
    overhead_warmup: int
    stampede_repeats: int
    stall_reps: int
    stale_rounds: int
    stale_warmup: int
    resilience_blocks: int = 30
    resilience_per_block: int = 300
    sessions_count: int = 100_000
    sessions_memory: int = 20_000
    store_hot_calls: int = 20_000
    store_refreshes: int = 300
    store_repeats: int = 3
    idp_fetches: int = 200
    loop_gap_reps: int = 6
    loop_gap_warmup: bool = True
    logins_fetches: int = 100
    logins_discoveries: int = 100
    logins_processes: int = 20
    million_sessions: int = 1_000_000
    # the scenario itself is the same in both scales
    threads: int = 32
    per_thread: int = 10
    coroutines: int = 200
    latency: float = TOKEN_LATENCY  # token endpoint, seconds


FULL = Scale(
    overhead_blocks=30,
    overhead_per_block=300,
    overhead_warmup=2,
    stampede_repeats=5,
    stall_reps=20,
    stale_rounds=30,
    stale_warmup=2,
)
QUICK = Scale(
    overhead_blocks=4,
    overhead_per_block=100,
    overhead_warmup=1,
    stampede_repeats=1,
    stall_reps=2,
    stale_rounds=3,
    stale_warmup=1,
    resilience_blocks=4,
    resilience_per_block=50,
    sessions_count=2_000,
    sessions_memory=1_000,
    store_hot_calls=1_000,
    store_refreshes=20,
    store_repeats=1,
    idp_fetches=20,
    loop_gap_reps=1,
    loop_gap_warmup=False,
    logins_fetches=10,
    logins_discoveries=10,
    logins_processes=2,
    million_sessions=5_000,
)


def benchmarks(scale: Scale) -> dict[str, Callable[[], Section]]:
    """The benchmarks in report order, each bound to ``scale``."""
    return {
        "overhead": lambda: overhead.run(
            blocks=scale.overhead_blocks,
            per_block=scale.overhead_per_block,
            warmup=scale.overhead_warmup,
        ),
        "stampede": lambda: stampede.run(
            threads=scale.threads,
            per_thread=scale.per_thread,
            coroutines=scale.coroutines,
            repeats=scale.stampede_repeats,
            latency=scale.latency,
        ),
        "stall": lambda: stall.run(reps=scale.stall_reps, latency=scale.latency),
        "stale": lambda: stale.run(
            rounds=scale.stale_rounds, warmup=scale.stale_warmup, latency=scale.latency
        ),
        "resilience": lambda: resilience.run(
            blocks=scale.resilience_blocks, per_block=scale.resilience_per_block
        ),
        "sessions": lambda: sessions.run(
            sessions=scale.sessions_count, memory_sessions=scale.sessions_memory
        ),
        "stores": lambda: stores.run(
            hot_calls=scale.store_hot_calls,
            refreshes=scale.store_refreshes,
            repeats=scale.store_repeats,
        ),
        "idp": lambda: idp.run(n=scale.idp_fetches),
        "loop_gap": lambda: loop_gap.run(reps=scale.loop_gap_reps, warmup=scale.loop_gap_warmup),
        "logins": lambda: logins.run(
            fetches=scale.logins_fetches,
            discoveries=scale.logins_discoveries,
            processes=scale.logins_processes,
        ),
        "million": lambda: million.run(sessions=scale.million_sessions),
    }


def header(machine: dict[str, str], *, mode: str, command: str, seconds: float | None) -> str:
    lines = [
        "# authpulse benchmarks",
        "",
        f"- **mode**: {mode}" + (f" ({seconds:.0f} s)" if seconds is not None else ""),
        f"- **date**: {machine['date']}",
        f"- **cpu**: {machine['cpu']}, {machine['cores']} cores",
        f"- **python**: {machine['python']} on {machine['platform']}",
        f"- **versions**: httpx {machine['httpx']}, authpulse {machine['authpulse']}, "
        f"authlib {machine['authlib']}, httpx-auth {machine['httpx-auth']}",
        f"- **authpulse source**: {machine['revision']}",
        f"- **load average** (1/5/15 min) at start: {machine['load']}"
        + (f", at end: {machine['load_end']}" if "load_end" in machine else ""),
        f"- **command**: `{command}`",
        "",
        "Measurements, not assertions: compare figures from the same machine only. "
        "See `benchmarks/README.md` for what each benchmark measures.",
        "",
    ]
    return "\n".join(lines)


def render(
    sections: Sequence[Section],
    machine: dict[str, str],
    *,
    mode: str,
    command: str,
    seconds: float | None,
) -> str:
    body = "\n".join(s.markdown() for s in sections)
    return header(machine, mode=mode, command=command, seconds=seconds) + "\n" + body


def as_json(
    sections: Sequence[Section],
    machine: dict[str, str],
    *,
    mode: str,
    command: str,
    seconds: float | None,
) -> dict[str, Any]:
    return {
        "mode": mode,
        "command": command,
        "seconds": seconds,
        "machine": machine,
        "sections": {
            s.key: {
                "title": s.title,
                "intro": s.intro,
                "headers": s.headers,
                "rows": s.rows,
                "notes": s.notes,
                "data": s.data,
            }
            for s in sections
        },
    }


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_results(out_dir: Path, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "latest.md", out_dir / "latest.json"
    _write(md, markdown)
    _write(js, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return md, js


def write_charts(out_dir: Path, data: dict[str, Any]) -> list[Path]:
    """PNG charts of the run (benchmarks/charts.py); none, with a message, without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        print("[charts skipped: matplotlib is not installed (the bench extra)]", file=sys.stderr)
        return []
    from benchmarks import charts

    paths = charts.render(data, out_dir)
    print(f"[charts: {', '.join(p.name for p in paths)}]", file=sys.stderr)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts (a few seconds)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(benchmarks(FULL)),
        help="run only these benchmarks (default: all)",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=RESULTS, help=f"where to write latest.md/json ({RESULTS})"
    )
    parser.add_argument("--no-write", action="store_true", help="print only, write no files")
    args = parser.parse_args(argv)

    mode = "quick" if args.quick else "full"
    scale = QUICK if args.quick else FULL
    command = "python benchmarks/run.py " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    machine = machine_info()
    print(header(machine, mode=mode, command=command.strip(), seconds=None), flush=True)

    start = time.perf_counter()
    sections: list[Section] = []
    for name, bench in benchmarks(scale).items():
        if args.only and name not in args.only:
            continue
        print(f"[running {name} …]", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        section = bench()
        print(f"[{name}: {time.perf_counter() - t0:.1f} s]", file=sys.stderr, flush=True)
        sections.append(section)
        print(section.markdown(), flush=True)
    seconds = time.perf_counter() - start
    machine["load_end"] = load_average()

    if not args.no_write:
        kw: dict[str, Any] = {"mode": mode, "command": command.strip(), "seconds": seconds}
        md, js = write_results(
            args.out_dir, render(sections, machine, **kw), as_json(sections, machine, **kw)
        )
        print(f"[wrote {md} and {js.name} in {seconds:.0f} s]", file=sys.stderr)
        write_charts(args.out_dir, json.loads(js.read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
