"""Benchmark of change events (issue 13): latency and Salesforce API calls with CDC, and with polling alone.

Everything runs locally: the emulated org over HTTPS, template.yaml deployed into moto with the real
handlers, the engine clock pinned to the emulator's virtual clock.  The same steady stream of
Salesforce changes (a user edit every ``--interval`` virtual seconds on average, at a random
millisecond, spread over Account, Contact and Lead) runs twice from the same seed, same run:

* **polling alone** (no EventRelayBusName): the schedule fires every virtual minute, objects pause
  300 s; a change reaches DynamoDB through the next cycle of its object;
* **with CDC** (EventRelayBusName set, the emulator's Event Relay envelopes put on the stack's partner
  bus): the queue is delivered once per virtual second (the event source mapping's one-second
  batching window); the schedule keeps firing every minute, the cycles back off to CdcPauseSeconds
  (900 s) while the events flow.

Latency is from the Salesforce commit to the item in DynamoDB: virtual time until the delivery (or the
tick) that stored it, plus the real time that delivery took on this machine (EventBridge PutEvents,
SQS, the in-process Lambda runtime, moto's DynamoDB, the emulator's HTTPS): "what the local runtime
adds" is that wall part, reported apart.  AWS's own hops (Event Relay -> EventBridge -> SQS -> the
Lambda poller) are not in the figure.  API calls per hour: every call the emulator served during the
stream (first copy and settling excluded), scaled to an hour.

Targets: CDC p95 <= 2 s; API calls per hour with CDC <= polling alone.

Usage: .venv/bin/python bench/cdc.py [--json] [--minutes 30] [--interval 2] [--records 300]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import EngineBench, engine_bench, handler_output_silenced, percentile, verdict

OBJECTS = ("Account", "Contact", "Lead")
FIELD = {"Account": "Description", "Contact": "Title", "Lead": "Title"}
SCHEDULE_SECONDS = 60
PAUSE_SECONDS = 300
TARGET_P95_S = 2.0


def _stored(bench: EngineBench, obj: str, record_id: str) -> Any:
    table = bench.settings.table_for(bench.settings.registry.get(obj).family)
    item = bench.stack.boto3_client("dynamodb").get_item(
        TableName=table, Key={"Id": {"S": record_id}}, ConsistentRead=True
    )
    return (item.get("Item") or {}).get(FIELD[obj], {}).get("S")


def run_mode(*, cdc: bool, minutes: int, interval: float, records: int, seed: int) -> dict[str, Any]:
    from sfsync_local.relay import LocalEventRelay, bus_name

    def parameters_for(emu: Any) -> dict[str, str]:
        return {"EventRelayBusName": bus_name(emu.org.org_id)} if cdc else {}

    objects = ",".join(OBJECTS)
    with engine_bench(
        objects=objects, records=records, pause_seconds=PAUSE_SECONDS, parameters_for=parameters_for
    ) as bench:
        bench.tick(bench.settings.safety_lag_seconds + 1)  # the first copy
        bench.settle()
        relay = LocalEventRelay(bench.stack, bench.emu.org).attach() if cdc else None
        org, clock = bench.emu.org, bench.emu.clock
        ids: dict[str, list[str]] = {}
        with org.lock:
            for obj in OBJECTS:
                converted = ' AND "IsConverted" = 0' if obj == "Lead" else ""
                rows = org.conn.execute(f'SELECT "Id" FROM "{obj}" WHERE "IsDeleted" = 0{converted} ORDER BY "Id"')
                ids[obj] = [row[0] for row in rows]
        rng = random.Random(seed)
        calls_before = bench.emu.api_calls()
        #: per record, its changes not yet seen in DynamoDB (value, commit ms); a later change supersedes the
        #: earlier ones, which count as stored when it is (each with its own latency)
        pending: dict[tuple[str, str], list[tuple[str, int]]] = {}
        latencies: list[float] = []
        delivery_walls: list[float] = []
        cycles = 0
        changes = 0

        def observe(wall_s: float) -> None:
            now_ms = clock.now_ms()
            for (obj, rid), waiting in list(pending.items()):
                if _stored(bench, obj, rid) == waiting[-1][0]:
                    latencies.extend((now_ms - changed_ms) / 1000 + wall_s for _, changed_ms in waiting)
                    del pending[(obj, rid)]

        for second in range(minutes * 60):
            if rng.random() < 1 / interval:
                offset_ms = rng.randint(0, 999)
                clock.advance(offset_ms / 1000)
                obj = rng.choice(OBJECTS)
                rid = rng.choice(ids[obj])
                value = f"bench change {changes}"
                org.update(obj, rid, {FIELD[obj]: value}, as_api=False)
                pending.setdefault((obj, rid), []).append((value, clock.now_ms()))
                changes += 1
                clock.advance((1000 - offset_ms) / 1000)
            else:
                clock.advance(1)
            if relay is not None:  # the batching window ends: the queue's events go to the function
                started = time.perf_counter()
                relay.deliver()
                bench.stack.drain()
                wall = time.perf_counter() - started
                if pending:
                    delivery_walls.append(wall)
                    observe(wall)
            if second % SCHEDULE_SECONDS == SCHEDULE_SECONDS - 1:
                tick = bench.tick(0)
                if tick.errors:
                    raise RuntimeError(f"cycles failed: {tick.errors[:2]}")
                cycles += len(tick.syncs)
                observe(tick.sync_wall_s)
        calls = bench.emu.api_calls() - calls_before
        hours = minutes / 60
        # the stream stops: the changes still pending reach DynamoDB through the next cycles (not counted
        # in the calls per hour, which are the stream's)
        for _ in range(2 * PAUSE_SECONDS // SCHEDULE_SECONDS + 2):
            if not pending:
                break
            tick = bench.tick(SCHEDULE_SECONDS)
            observe(tick.sync_wall_s)
        return {
            "mode": "cdc" if cdc else "polling",
            "changes": changes,
            "stored": len(latencies),
            "never_stored": sum(len(waiting) for waiting in pending.values()),
            "latency_p50_s": statistics.median(latencies) if latencies else None,
            "latency_p95_s": percentile(latencies, 0.95) if latencies else None,
            "latency_max_s": max(latencies) if latencies else None,
            "local_runtime_p50_s": statistics.median(delivery_walls) if delivery_walls else None,
            "local_runtime_p95_s": percentile(delivery_walls, 0.95) if delivery_walls else None,
            "api_calls": calls,
            "api_calls_per_hour": calls / hours,
            "cycles": cycles,
            "cycles_per_hour": cycles / hours,
            "minutes": minutes,
        }


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s" if value < 10 else f"{value:.0f} s"


def render(report: dict[str, Any]) -> str:
    polling, cdc = report["polling"], report["cdc"]
    lines = [
        f"steady stream: {cdc['changes']} changes over {cdc['minutes']} virtual minutes across {', '.join(OBJECTS)}",
        f"1. commit -> item latency with CDC: p50 {_s(cdc['latency_p50_s'])}, p95 {_s(cdc['latency_p95_s'])}, max "
        f"{_s(cdc['latency_max_s'])} (target p95 <= {TARGET_P95_S:g} s) {verdict(report['latency_pass'])}",
        f"   of which the local runtime (PutEvents, SQS, in-process Lambda, moto, emulator HTTPS) per delivery: p50 "
        f"{_s(cdc['local_runtime_p50_s'])}, p95 {_s(cdc['local_runtime_p95_s'])}; the rest is the 1 s batching window",
        f"   polling alone (pause {PAUSE_SECONDS} s, schedule every {SCHEDULE_SECONDS} s): p50 "
        f"{_s(polling['latency_p50_s'])}, p95 {_s(polling['latency_p95_s'])}, max {_s(polling['latency_max_s'])}",
        f"2. Salesforce API calls per hour: with CDC {cdc['api_calls_per_hour']:.0f} ({cdc['cycles_per_hour']:.0f} "
        f"cycles/h), polling alone {polling['api_calls_per_hour']:.0f} ({polling['cycles_per_hour']:.0f} cycles/h) "
        f"(target: CDC <= polling) {verdict(report['calls_pass'])}",
    ]
    lost = [m for m in (polling, cdc) if m["never_stored"]]
    for mode in lost:
        lines.append(f"   {mode['mode']}: {mode['never_stored']} change(s) never stored")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--minutes", type=int, default=30, help="virtual minutes of the change stream (30)")
    parser.add_argument("--interval", type=float, default=2.0, help="mean virtual seconds between changes (2)")
    parser.add_argument("--records", type=int, default=300, help="generated records of the org (300)")
    parser.add_argument("--seed", type=int, default=13, help="seed of the change stream (13)")
    args = parser.parse_args(argv)
    if args.minutes < 1 or args.interval < 1 or not 100 <= args.records <= 1_000_000:
        parser.error("--minutes must be positive, --interval at least 1, --records between 100 and 1,000,000")
    with handler_output_silenced() as out:
        options = {"minutes": args.minutes, "interval": args.interval, "records": args.records, "seed": args.seed}
        polling = run_mode(cdc=False, **options)
        cdc = run_mode(cdc=True, **options)
        report = {
            "polling": polling,
            "cdc": cdc,
            "latency_pass": cdc["latency_p95_s"] is not None and cdc["latency_p95_s"] <= TARGET_P95_S,
            "calls_pass": cdc["api_calls_per_hour"] <= polling["api_calls_per_hour"],
        }
        if args.json:
            print(json.dumps(report, indent=2, default=str), file=out)
        else:
            print(render(report), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
