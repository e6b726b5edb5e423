"""PNG charts of a benchmark run, drawn from its JSON (``results/latest.json``).

    python benchmarks/charts.py                         # from results/latest.json
    python benchmarks/charts.py path/to/saved.json      # from a saved run

Writes, next to the JSON (or into ``--out-dir``):

- ``overhead.png``: per-request overhead ratio vs raw httpx (median, IQR bars),
  sync and async, with the 1.05× target;
- ``stampede.png``: token endpoint calls and wall time per library, sync and async;
- ``stall.png``: worst (and median) event-loop gap per library during a refresh.

Needs matplotlib (the ``bench`` extra); rendered with the Agg backend, no display.
A chart whose section is missing from the run is left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

#: the order (and names) of the overhead chart's libraries
OVERHEAD_LIBRARIES = ["authpulse", "authpulse auth only", "authlib", "httpx-auth"]
MODES = ("sync", "async")
COLORS = {"sync": "#4c72b0", "async": "#dd8452"}
DPI = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)
    return path


def _caption(data: dict[str, Any]) -> str:
    machine = data.get("machine", {})
    parts = [machine.get("date", ""), machine.get("cpu", ""), machine.get("python", "")]
    return " · ".join(p for p in parts if p)


def overhead_chart(data: dict[str, Any], path: Path) -> Path:
    """Grouped bars: median ratio library/raw httpx per library, sync and async."""
    plt = _pyplot()
    results = data["sections"]["overhead"]["data"]["results"]
    target = float(data["sections"]["overhead"]["data"].get("target_ratio", 1.05))
    by_key = {(r["mode"], r["library"]): r for r in results}
    libraries = [lib for lib in OVERHEAD_LIBRARIES if any((m, lib) in by_key for m in MODES)]
    libraries += sorted({r["library"] for r in results} - set(libraries))

    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.38
    for i, mode in enumerate(MODES):
        xs, heights, lo, hi = [], [], [], []
        for j, lib in enumerate(libraries):
            r = by_key.get((mode, lib))
            if r is None:
                continue
            xs.append(j + (i - 0.5) * width)
            med = float(r["median_ratio"])
            heights.append(med)
            lo.append(med - float(r.get("ratio_q1", med)))
            hi.append(float(r.get("ratio_q3", med)) - med)
        bars = ax.bar(xs, heights, width, yerr=[lo, hi], capsize=3, color=COLORS[mode], label=mode)
        ax.bar_label(bars, labels=[f"{h:.3f}×" for h in heights], padding=3, fontsize=8)
    ax.axhline(
        target,
        color="#c44e52",
        linestyle="--",
        linewidth=1.2,
        label=f"authpulse target {target:.2f}×",
    )
    ax.axhline(1.0, color="grey", linewidth=0.8)
    names = [f"{lib}\n(vs raw {_baseline(by_key, lib)})" for lib in libraries]
    ax.set_xticks(range(len(libraries)), names, fontsize=8)
    top = max((float(r["ratio_q3"]) for r in results if "ratio_q3" in r), default=target)
    ax.set_ylim(0.9, max(top, target) * 1.08)
    ax.set_ylabel("block time / raw block time (median, IQR)")
    ax.set_title("Per-request overhead vs raw httpx, FRESH token (lower is better)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.text(0.01, 0.01, _caption(data), fontsize=6, color="grey")
    return _save(plt, fig, path)


def _baseline(by_key: dict[tuple[str, str], Any], library: str) -> str:
    for mode in MODES:
        r = by_key.get((mode, library))
        if r is not None:
            return str(r.get("baseline", "raw httpx")).removeprefix("raw ")
    return "httpx"


def _stampede_label(row: dict[str, Any]) -> str:
    grant = str(row["grant"])
    if grant.startswith("none"):
        return f"{row['library']}, valid token"
    short = {"refresh_token": "refresh", "client_credentials": "client cred."}.get(grant, grant)
    return f"{row['library']} ({short})"


def stampede_chart(data: dict[str, Any], path: Path) -> Path:
    """Token calls and median wall time per library and grant, sync and async."""
    plt = _pyplot()
    d = data["sections"]["stampede"]["data"]
    rows = d["rows"]
    labels: list[str] = []
    for row in rows:
        label = _stampede_label(row)
        if label not in labels:
            labels.append(label)
    by_key = {(r["mode"], _stampede_label(r)): r for r in rows}

    fig, (calls_ax, wall_ax) = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    height = 0.38
    for i, mode in enumerate(MODES):
        ys, calls, walls = [], [], []
        for j, label in enumerate(labels):
            r = by_key.get((mode, label))
            if r is None:
                continue
            ys.append(j + (i - 0.5) * height)
            calls.append(_median([run["token_calls"] for run in r["runs"]]))
            walls.append(_median([run["wall_ns"] for run in r["runs"]]) / 1e6)
        who = (
            f"sync ({d['threads']}×{d['requests_per_thread']} threads)"
            if mode == "sync"
            else f"async ({d['coroutines']} coroutines)"
        )
        b = calls_ax.barh(ys, calls, height, color=COLORS[mode], label=who)
        calls_ax.bar_label(b, labels=[f"{c:g}" for c in calls], padding=2, fontsize=7)
        b = wall_ax.barh(ys, walls, height, color=COLORS[mode], label=who)
        wall_ax.bar_label(b, labels=[f"{w:.0f}" for w in walls], padding=2, fontsize=7)
    calls_ax.set_yticks(range(len(labels)), labels, fontsize=8)
    calls_ax.invert_yaxis()
    calls_ax.set_xlabel("token endpoint calls (median of runs)")
    calls_ax.set_xlim(0, max(calls_ax.get_xlim()[1], 1) * 1.12)
    wall_ax.set_xscale("log")
    wall_ax.set_xlim(right=wall_ax.get_xlim()[1] * 2.5)
    wall_ax.set_xlabel("wall time, ms (median, log scale)")
    calls_ax.legend(loc="lower right", fontsize=7)
    latency_ms = float(d.get("token_latency_s", 0.05)) * 1000
    fig.suptitle(
        f"Stampede on an EXPIRED token ({latency_ms:.0f} ms token endpoint; lower is better)",
        fontsize=10,
    )
    fig.text(0.01, 0.01, _caption(data), fontsize=6, color="grey")
    return _save(plt, fig, path)


def stall_chart(data: dict[str, Any], path: Path) -> Path:
    """Worst and median max gap of a 1 ms ticker during one async refresh."""
    plt = _pyplot()
    d = data["sections"]["stall"]["data"]
    rows = d["rows"]
    tick_ms = float(d.get("tick_s", 0.001)) * 1000
    labels = [str(r["label"]) for r in rows]
    worst = [max(r["max_gap_ns"]) / 1e6 if r["max_gap_ns"] else 0.0 for r in rows]
    medians = [_median(r["max_gap_ns"]) / 1e6 if r["max_gap_ns"] else 0.0 for r in rows]

    fig, ax = plt.subplots(figsize=(8, 3.6))
    ys = range(len(labels))
    b = ax.barh(ys, worst, 0.6, color="#8172b3", label="worst max gap")
    ax.bar_label(b, labels=[f"{w:.2f} ms" for w in worst], padding=2, fontsize=7)
    ax.scatter(medians, ys, color="black", marker="|", s=120, zorder=3, label="median max gap")
    ax.axvline(tick_ms, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(list(ys), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(tick_ms / 2, max([*worst, tick_ms]) * 3)
    ax.set_xlabel(f"longest gap between {tick_ms:g} ms ticks, ms (log scale; lower is better)")
    latency_ms = float(d.get("token_latency_s", 0.05)) * 1000
    ax.set_title(f"Event-loop stall during a {latency_ms:.0f} ms async refresh", fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    fig.text(0.01, 0.01, _caption(data), fontsize=6, color="grey")
    return _save(plt, fig, path)


CHARTS = {
    "overhead": ("overhead.png", overhead_chart),
    "stampede": ("stampede.png", stampede_chart),
    "stall": ("stall.png", stall_chart),
}


def render(data: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write one PNG per charted section present in ``data``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = data.get("sections", {})
    return [draw(data, out_dir / name) for key, (name, draw) in CHARTS.items() if key in sections]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PNG charts from a benchmark run's JSON.")
    parser.add_argument(
        "json", nargs="?", type=Path, default=RESULTS / "latest.json", help="the run's JSON"
    )
    parser.add_argument("--out-dir", type=Path, help="where to write (default: next to the JSON)")
    args = parser.parse_args(argv)
    data = json.loads(args.json.read_text(encoding="utf-8"))
    for path in render(data, args.out_dir or args.json.parent):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
