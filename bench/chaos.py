"""Chaos runs at scale (issue #11): many long seeded fault schedules on the local stack, and the figures.

Each schedule (``sfsync_local.chaos``) deploys template.yaml on the local stack against a fresh emulated
org, plays its workload and faults over simulated hours, lets the engine heal, then checks: ``sfsync
verify`` clean for every object, no local change lost or duplicated, nothing stuck, every fault seen.
Prints: schedules run, simulated hours, faults injected by kind (fired/planned) with the evidence found,
anything lost, duplicated or stuck, and the wall time.  Exit code 1 when any schedule failed.

The ``bench`` profile runs the production cadence (a tick every minute, PauseSeconds 300, the sweep every
5 minutes) for ``--fault-hours`` of workload and faults (default 8), then heals; ``--profile ci`` runs the
CI tier's schedules (``tests/chaos``).

Usage:
  .venv/bin/python bench/chaos.py                       # 4 bench schedules, 8 h of faults each, 2 workers
  .venv/bin/python bench/chaos.py --seeds 1-12 --fault-hours 24 --workers 2 [--json]
  .venv/bin/python bench/chaos.py --seed 17 --verbose   # replay one CI schedule (make chaos SEED=17)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "engine"))


def _profile(name: str, fault_hours: float | None) -> Any:
    from sfsync_local.chaos import PROFILES

    profile = PROFILES[name]
    if fault_hours is not None:
        profile = dataclasses.replace(profile, fault_minutes=int(fault_hours * 60))
    return profile


def _run(seed: int, profile_name: str, fault_hours: float | None, verbose: bool) -> dict[str, Any]:
    stdout, sys.stdout = sys.stdout, sys.stderr  # the engine's log lines (its logger binds stdout on import)
    try:
        from sfsync_local.chaos import plan_schedule, run_schedule

        schedule = plan_schedule(seed, _profile(profile_name, fault_hours))
        if verbose:
            print(schedule.describe(), file=sys.stderr)
        log = (lambda line: print(line, file=sys.stderr, flush=True)) if verbose else None
        report = run_schedule(schedule, log=log)
    finally:
        sys.stdout = stdout
    out = report.to_dict()
    out["planned"] = [f.label for f in schedule.faults]
    if not report.ok or verbose:
        out["explain"] = report.explain(schedule)
    return out


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


_COUNT = re.compile(r" x\d+")


def summarize(results: list[dict[str, Any]], *, wall_s: float, profile: str) -> dict[str, Any]:
    planned: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    evidence: dict[str, Counter[str]] = {}
    for result in results:
        planned.update(result["planned"])
        for row in result["faults"]:
            if row["fired"]:
                fired[row["label"]] += 1
                for signal in row["evidence"]:
                    evidence.setdefault(row["label"], Counter())[_COUNT.sub("", signal)] += 1
    totals = {key: sum(len(r[key]) for r in results) for key in ("lost", "duplicated", "stuck", "copy", "unseen")}
    totals["unfired"] = sum(len(r["unfired"]) for r in results)
    totals["problems"] = sum(len(r["problems"]) for r in results)
    ops: Counter[str] = Counter()
    for r in results:
        ops.update({f"salesforce {k}": v for k, v in r["counts"]["salesforce_ops"].items()})
        ops.update({f"local {k}": v for k, v in r["counts"]["local_ops"].items()})
    settled = [r["settled_after_seconds"] for r in results if r["settled_after_seconds"] is not None]
    return {
        "profile": profile,
        "schedules": len(results),
        "failed_seeds": [r["seed"] for r in results if not r["ok"]],
        "simulated_hours": round(sum(r["simulated_seconds"] for r in results) / 3600, 1),
        "faults_planned": dict(sorted(planned.items())),
        "faults_fired": dict(sorted(fired.items())),
        "faults_fired_total": sum(fired.values()),
        "evidence": {k: dict(v.most_common()) for k, v in sorted(evidence.items())},
        "totals": totals,
        "workload": dict(sorted(ops.items())),
        "executions": dict(sum((Counter(r["counts"]["executions"]) for r in results), Counter())),
        "healed_within_s": {
            "max": max(settled, default=None),
            "mean": round(sum(settled) / len(settled)) if settled else None,
        },
        "never_healed": len(results) - len(settled),
        "wall_seconds": round(wall_s, 1),
        "schedule_wall_seconds": round(sum(r["wall_seconds"] for r in results), 1),
        "cpu_seconds": round(sum(r["cpu_seconds"] for r in results), 1),
    }


def print_summary(summary: dict[str, Any], results: list[dict[str, Any]]) -> None:
    s = summary
    print(f"chaos: {s['schedules']} schedules (profile {s['profile']}), {s['simulated_hours']} simulated hours")
    print(f"faults injected: {s['faults_fired_total']} (fired / planned by kind, then the evidence found)")
    for label, planned in s["faults_planned"].items():
        fired = s["faults_fired"].get(label, 0)
        print(f"  {label:32} {fired:4d} / {planned:<4d}")
        for signal, n in s["evidence"].get(label, {}).items():
            print(f"      {n:4d}  {signal}")
    t = s["totals"]
    print(
        f"lost {t['lost']}, duplicated {t['duplicated']}, stuck {t['stuck']}, copy differences {t['copy']}, "
        f"faults without evidence {t['unseen']}, armed but never fired {t['unfired']}, harness problems {t['problems']}"
    )
    print(f"healed after the faults within {s['healed_within_s']} s (never healed: {s['never_healed']})")
    print("workload: " + ", ".join(f"{k} {v}" for k, v in s["workload"].items()))
    print("executions: " + ", ".join(f"{k} {v}" for k, v in sorted(s["executions"].items())))
    print(f"wall: {s['wall_seconds']} s ({s['schedule_wall_seconds']} s of schedules, {s['cpu_seconds']} s of CPU)")
    for result in results:
        if not result["ok"]:
            print()
            print(result.get("explain", f"seed {result['seed']} failed"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--seeds", default="1-4", help="seeds to run: 7, 1-20, 3,9,12-14 (default 1-4)")
    which.add_argument("--seed", type=int, default=None, help="replay one schedule (with --verbose: its timeline)")
    parser.add_argument("--profile", choices=("bench", "ci"), default=None, help="default: bench (ci with --seed)")
    parser.add_argument("--fault-hours", type=float, default=None, help="hours of workload and faults (bench: 8)")
    parser.add_argument("--workers", type=int, default=2, help="schedules run at once, one process each (2)")
    parser.add_argument("--verbose", action="store_true", help="print each schedule's timeline (stderr)")
    parser.add_argument("--json", action="store_true", help="the summary as JSON")
    args = parser.parse_args(argv)
    profile = args.profile or ("ci" if args.seed is not None else "bench")
    fault_hours = args.fault_hours if args.fault_hours is not None or profile != "bench" else 8.0
    seeds = [args.seed] if args.seed is not None else parse_seeds(args.seeds)
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    if len(seeds) == 1 or args.workers <= 1:
        for seed in seeds:
            results.append(_run(seed, profile, fault_hours, args.verbose))
            print(f"seed {seed}: {'ok' if results[-1]['ok'] else 'FAILED'}", file=sys.stderr, flush=True)
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
            futures = {pool.submit(_run, seed, profile, fault_hours, args.verbose): seed for seed in seeds}
            for future in concurrent.futures.as_completed(futures):
                results.append(future.result())
                done = results[-1]
                print(
                    f"seed {done['seed']}: {'ok' if done['ok'] else 'FAILED'} "
                    f"({done['simulated_seconds'] / 3600:.1f} h simulated, {done['wall_seconds']} s)",
                    file=sys.stderr,
                    flush=True,
                )
    results.sort(key=lambda r: r["seed"])
    summary = summarize(results, wall_s=time.monotonic() - started, profile=profile)
    if args.json:
        print(json.dumps({"summary": summary, "schedules": results}, indent=2))
    else:
        print_summary(summary, results)
    return 0 if not summary["failed_seeds"] else 1


if __name__ == "__main__":
    sys.exit(main())
