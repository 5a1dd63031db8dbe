"""Benchmark of the local Salesforce emulator (issue: the embedded default and the test bed).

Reports, on this machine:
  * seeding N records (default 1,000,000) with the deterministic generator: wall time and peak RSS
    (targets: under 60 s and under 2 GB resident) — measured in a child process so the figure is
    the seeding's own;
  * Bulk API 2.0 result streaming over HTTPS, as a client reads it (target: at least 100,000 rows/s);
  * one REST query page of 2,000 rows, median latency over many pages (target: under 50 ms).

Usage: .venv/bin/python bench/emulator.py [--records 1000000] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from typing import Any


def _seed_child(records: int, out: Any) -> None:
    from sfsync_emulator.catalogue import default_schema
    from sfsync_emulator.clock import Clock
    from sfsync_emulator.generator import generate_org
    from sfsync_emulator.schema import parse_datetime_ms
    from sfsync_emulator.store import Org

    org = Org(default_schema(), Clock(parse_datetime_ms("2026-11-01T00:00:00Z")))
    started = time.perf_counter()
    counts = generate_org(org, seed=7, records=records)
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.put({"seconds": elapsed, "peak_rss_mb": peak_kb / 1024, "counts": counts})


def bench_seed(records: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_seed_child, args=(records, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return dict(result)


def bench_http(records: int) -> dict[str, Any]:
    from sfsync_emulator.emulator import Emulator

    emu = Emulator.start(seed=7, records=records)
    try:
        session = emu.session()
        token = emu.access_token()
        auth = {"Authorization": f"Bearer {token}"}
        base = f"{emu.instance_url}/services/data/v59.0"
        counts = {r["object"]: r["count"] for r in _object_counts(emu)}
        biggest = max(counts, key=lambda name: counts[name])
        fields = _bulk_fields(session, base, auth, biggest)
        soql = f"SELECT {', '.join(fields)} FROM {biggest}"

        # Bulk 2.0: create, poll, stream every result set as a client would.
        job = session.post(f"{base}/jobs/query", json={"operation": "queryAll", "query": soql}, headers=auth).json()
        while job["state"] not in ("JobComplete", "Failed", "Aborted"):
            time.sleep(0.05)
            job = session.get(f"{base}/jobs/query/{job['id']}", headers=auth).json()
        rows = 0
        started = time.perf_counter()
        locator: str | None = None
        while True:
            params: dict[str, Any] = {"maxRecords": 250_000}
            if locator:
                params["locator"] = locator
            with session.get(
                f"{base}/jobs/query/{job['id']}/results",
                params=params,
                headers={**auth, "Accept": "text/csv"},
                stream=True,
            ) as resp:
                resp.raise_for_status()
                lines = sum(chunk.count(b"\n") for chunk in resp.iter_content(1 << 20))
                rows += lines - 1  # header line
                locator = resp.headers["Sforce-Locator"]
            if locator == "null":
                break
        bulk_seconds = time.perf_counter() - started

        # REST: pages of 2,000 rows, each one timed.
        timings = []
        url = f"{base}/queryAll"
        page = session.get(url, params={"q": soql}, headers={**auth, "Sforce-Query-Options": "batchSize=2000"})
        body = page.json()
        while not body["done"] and len(timings) < 60:
            t0 = time.perf_counter()
            resp = session.get(f"{emu.instance_url}{body['nextRecordsUrl']}", headers=auth)
            body = resp.json()
            timings.append((time.perf_counter() - t0) * 1000)
            assert len(body["records"]) in (2000, body["totalSize"] % 2000)
        return {
            "object": biggest,
            "fields": len(fields),
            "bulk_rows": rows,
            "bulk_seconds": bulk_seconds,
            "bulk_rows_per_s": rows / bulk_seconds,
            "rest_pages": len(timings),
            "rest_page_ms_median": statistics.median(timings),
            "rest_page_ms_p95": sorted(timings)[int(len(timings) * 0.95) - 1],
        }
    finally:
        emu.stop()


def _object_counts(emu: Any) -> list[dict[str, Any]]:
    out = []
    with emu.org.lock:
        for name in emu.org.schema.objects:
            (count,) = emu.org.conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()
            out.append({"object": name, "count": count})
    return out


def _bulk_fields(session: Any, base: str, auth: dict[str, str], obj: str) -> list[str]:
    describe = session.get(f"{base}/sobjects/{obj}/describe", headers=auth).json()
    return [f["name"] for f in describe["fields"] if f["type"] not in ("address", "location")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    seed = bench_seed(args.records)
    http = bench_http(args.records)
    report = {"records": args.records, "seed": seed, "http": http, "load_average_1m": os.getloadavg()[0]}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"seeding {args.records:,} records: {seed['seconds']:.1f} s (target < 60 s), "
        f"peak RSS {seed['peak_rss_mb']:.0f} MB (target < 2048 MB)"
    )
    print(
        f"bulk 2.0 streaming: {http['bulk_rows']:,} rows of {http['object']} ({http['fields']} fields) in "
        f"{http['bulk_seconds']:.2f} s = {http['bulk_rows_per_s']:,.0f} rows/s (target >= 100,000)"
    )
    print(
        f"REST query page of 2,000 rows: median {http['rest_page_ms_median']:.1f} ms, "
        f"p95 {http['rest_page_ms_p95']:.1f} ms over {http['rest_pages']} pages (target median < 50 ms)"
    )
    print(f"(load average {report['load_average_1m']:.1f} on {os.cpu_count()} CPUs at the end of the run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
