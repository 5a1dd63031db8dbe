"""Shared plumbing of the engine benchmarks: an emulated org and the local stack wired together.

:func:`engine_bench` starts an emulator (virtual clock, stopped) and deploys template.yaml into moto
with the real handlers, points the stack's Salesforce secret at the emulator and makes the engine
clock read the emulator's clock, so a benchmark moves time for both sides with
:meth:`EngineBench.tick`.  :class:`EngineCpu` measures the CPU the engine spends in one thread,
without the CPU moto spends emulating DynamoDB (which is server side in AWS).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

START = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
#: How the dispatcher explains an object its change probe found nothing for.
NO_CHANGE = "probe: no change"


class EmulatorTime:
    """The engine clock reading the emulator's virtual clock."""

    def __init__(self, emulator_clock: Any) -> None:
        self._clock = emulator_clock

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock.now_ms() / 1000, tz=dt.UTC)


@dataclass
class Tick:
    """One schedule tick: what the dispatcher did, the object syncs it started and what they cost."""

    dispatch: dict[str, Any]
    syncs: list[dict[str, Any]]
    api_calls: int
    calls_by_family: dict[str, int]
    wall_s: float
    sync_wall_s: float
    errors: list[Any] = field(default_factory=list)

    def idle(self, objects: list[str]) -> bool:
        """Each object ran a cycle that wrote nothing, or the dispatcher's change probe saw no change."""
        if self.errors or self.writes():
            return False
        ran = {str(s.get("object")) for s in self.syncs}
        skipped = self.dispatch.get("skipped") or {}
        return all(name in ran or str(skipped.get(name, "")).startswith(NO_CHANGE) for name in objects)

    def writes(self) -> int:
        keys = ("RecordsCreated", "RecordsUpdated", "RecordsDeleted", "RecordsFailed")
        return sum(int((s.get("counts") or {}).get(k, 0)) for s in self.syncs for k in keys)


@dataclass
class EngineBench:
    emu: Any
    stack: Any
    settings: Any

    def tick(self, advance_s: float = 0.0) -> Tick:
        """Advance both clocks by ``advance_s`` and fire the schedule once (fan-out drained)."""
        if advance_s:
            self.emu.clock.advance(advance_s)
        sync_name = self.stack.function_name("ObjectSyncFunction")
        before_inv = len(self.stack.invocations)
        before_calls = Counter(self.emu.app.counter.by_family())
        started = time.perf_counter()
        dispatch = self.stack.fire_schedule()
        # The first tick starts the full-copy workflow (Step Functions): wait for it, as a tick would.
        copies = (dispatch or {}).get("copies") or {}
        for entry in [*copies.get("started", []), *copies.get("already_started", [])]:
            description = self.stack.wait_for_execution(entry["execution_arn"], timeout_seconds=600)
            if description["status"] != "SUCCEEDED":
                raise RuntimeError(f"full copy {entry['execution_name']} ended {description['status']}")
        self.stack.drain()
        wall = time.perf_counter() - started
        after_calls = Counter(self.emu.app.counter.by_family())
        delta = {k: v for k, v in (after_calls - before_calls).items() if v}
        syncs: list[dict[str, Any]] = []
        errors: list[Any] = []
        sync_wall = 0.0
        for inv in self.stack.invocations[before_inv:]:
            if inv.function_name != sync_name:
                continue
            sync_wall += inv.duration_ms / 1000
            if inv.is_error:
                errors.append(inv.result)
            else:
                syncs.append(inv.result)
        return Tick(dispatch, syncs, sum(delta.values()), delta, wall, sync_wall, errors)

    def settle(self, max_ticks: int = 8) -> int:
        """Tick past overlap + lag + pause until a tick writes nothing; returns the ticks it took."""
        s = self.settings
        self.tick(s.overlap_seconds + s.safety_lag_seconds + s.pause_seconds + 1)
        objects = s.registry.names()
        for n in range(1, max_ticks + 1):
            result = self.tick(s.pause_seconds + 1)
            if result.errors:
                raise RuntimeError(f"object syncs failed while settling: {result.errors[:2]}")
            if result.idle(objects):
                return n
        raise RuntimeError(f"the copy did not settle within {max_ticks} ticks")


def salesforce_secret(emu: Any) -> dict[str, Any]:
    from sfsync_local.runner import emulator_secret

    return emulator_secret(emu)


def _reset_engine_caches() -> None:
    from aws_lambda_powertools.utilities import parameters
    from sfsync import wiring
    from sfsync.store import aws as sfsync_aws

    sfsync_aws.reset_clients()
    wiring._clients.clear()
    parameters.clear_caches()


@contextmanager
def engine_bench(
    *,
    objects: str,
    custom_objects: str = "",
    records: int = 0,
    pause_seconds: int = 300,
    seed: int = 7,
    populate: Callable[[Any], None] | None = None,
    parameters_for: Callable[[Any], dict[str, str]] | None = None,
) -> Iterator[EngineBench]:
    """An emulated org (``records`` generated, then ``populate(org)``) synced by a fresh local stack;
    ``parameters_for(emulator)``: further template parameters (the org's Event Relay bus ...)."""
    from sfsync.core import clock as sfsync_clock
    from sfsync.core.config import load_settings
    from sfsync_emulator.clock import Clock
    from sfsync_emulator.emulator import Emulator
    from sfsync_local.stack import LocalStack

    emu = Emulator.start(seed=seed, records=records, clock=Clock(int(START.timestamp() * 1000), running=False))
    try:
        if populate is not None:
            populate(emu.org)
        _reset_engine_caches()
        parameters = {"SyncObjects": objects, "PauseSeconds": str(pause_seconds)}
        if custom_objects:
            parameters["CustomObjects"] = custom_objects
        if parameters_for is not None:
            parameters.update(parameters_for(emu))
        stack = LocalStack.deploy(parameters=parameters, salesforce_secret=salesforce_secret(emu))
        try:
            settings = load_settings(stack.function_environment("ObjectSyncFunction"))
            with sfsync_clock.use_clock(EmulatorTime(emu.clock)):
                yield EngineBench(emu, stack, settings)
        finally:
            stack.close()
            _reset_engine_caches()
    finally:
        emu.stop()


class EngineCpu:
    """CPU time of the calling thread, minus what moto spends inside it emulating AWS.

    In Lambda, DynamoDB's work happens on AWS's side; locally moto does it in-process on the same
    thread, so its share is measured (around moto's botocore stub) and subtracted.  That share also
    holds the WriteBackFunction runs moto's stream triggers make inside each write (a separate,
    asynchronous Lambda in AWS).  The emulator
    serves HTTP from its own threads, which :func:`time.thread_time` does not count.

    ``sdk_s`` is the CPU the AWS SDK spends around those calls on the engine's side (botocore's
    per-request machinery: parameter handling, endpoint resolution, SigV4 signing, the HTTP layer,
    response parsing), the outermost DynamoDB client calls' CPU minus moto's share.  bench/full_sync.py
    charges it to the DynamoDB client, not to the engine; here it is reported both ways:
    ``engine_s`` includes it, ``engine_own_s`` does not (the engine's own code: Salesforce reads and
    decoding, the codec, the decisions, building the wire bodies).
    """

    def __init__(self) -> None:
        self.total_s = 0.0
        self.moto_s = 0.0
        self.moto_wall_s = 0.0
        #: CPU of the outermost DynamoDB client calls, and moto's share of it
        self.client_s = 0.0
        self.client_moto_s = 0.0
        self.client_calls = 0
        self._thread = threading.get_ident()

    @property
    def engine_s(self) -> float:
        return self.total_s - self.moto_s

    @property
    def sdk_s(self) -> float:
        return max(0.0, self.client_s - self.client_moto_s)

    @property
    def engine_own_s(self) -> float:
        return self.engine_s - self.sdk_s

    @contextmanager
    def measure(self) -> Iterator[EngineCpu]:
        import botocore.client
        from moto.core.botocore_stubber import BotocoreStubber

        original_stub = BotocoreStubber.__call__
        original_call = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
        owner = self
        # Only the outermost call of each kind counts: moto's stream triggers run the
        # WriteBackFunction inside a call, and its own calls are already inside that call's time.
        nesting = {"stub": 0, "client": 0}

        def timed(stub: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != owner._thread or nesting["stub"]:
                return original_stub(stub, *args, **kwargs)
            nesting["stub"] = 1
            t0, w0 = time.thread_time(), time.perf_counter()
            try:
                return original_stub(stub, *args, **kwargs)
            finally:
                nesting["stub"] = 0
                spent = time.thread_time() - t0
                owner.moto_s += spent
                owner.moto_wall_s += time.perf_counter() - w0
                if nesting["client"]:
                    owner.client_moto_s += spent

        def client_call(client: Any, operation_name: str, api_params: Any) -> Any:
            if (
                threading.get_ident() != owner._thread
                or nesting["client"]
                or nesting["stub"]
                or client.meta.service_model.service_name != "dynamodb"
            ):
                return original_call(client, operation_name, api_params)
            nesting["client"] = 1
            t0 = time.thread_time()
            try:
                return original_call(client, operation_name, api_params)
            finally:
                nesting["client"] = 0
                owner.client_s += time.thread_time() - t0
                owner.client_calls += 1

        BotocoreStubber.__call__ = timed  # type: ignore[method-assign, assignment]
        botocore.client.BaseClient._make_api_call = client_call  # type: ignore[attr-defined]
        start = time.thread_time()
        try:
            yield self
        finally:
            self.total_s += time.thread_time() - start
            BotocoreStubber.__call__ = original_stub  # type: ignore[method-assign]
            botocore.client.BaseClient._make_api_call = original_call  # type: ignore[attr-defined]


@contextmanager
def handler_output_silenced() -> Iterator[TextIO]:
    """Send everything written to file descriptor 1 (the handlers' JSON logs and EMF metrics) to
    /dev/null for the duration; yields a stream on the original stdout for the report."""
    sys.stdout.flush()
    saved = os.dup(1)
    report = os.fdopen(os.dup(saved), "w", encoding="utf-8", closefd=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        yield report
    finally:
        sys.stdout.flush()
        report.flush()
        os.dup2(saved, 1)
        os.close(saved)
        report.close()


def rest_fetch_floor(emu: Any, obj: str, where: str, *, batch_size: int = 2000) -> tuple[int, float]:
    """The floor of an incremental cycle's Salesforce side: rows and thread CPU seconds of fetching and
    decoding ``obj``'s rows matching ``where`` over REST as a bare client would (plain ``requests``,
    ``queryAll`` pages of ``batch_size`` decoded to dicts, every field the engine selects), nothing
    stored.  The emulator serves from its own threads, so its CPU is not counted."""
    import requests
    from sfsync.core.registry import build_registry
    from sfsync.inbound.fields import select_fields

    session = requests.Session()
    session.trust_env = False
    session.verify = emu.ca_path
    auth = (emu.credentials.client_id, emu.credentials.client_secret)
    token = session.post(emu.token_url, data={"grant_type": "client_credentials"}, auth=auth, timeout=30).json()
    headers = {"Authorization": f"Bearer {token['access_token']}", "Sforce-Query-Options": f"batchSize={batch_size}"}
    base = f"{emu.instance_url}/services/data/v59.0"
    describe = session.get(f"{base}/sobjects/{obj}/describe", headers=headers, timeout=30).json()
    spec = build_registry([obj]).get(obj)
    fields = select_fields(spec, describe).fields
    soql = f"SELECT {', '.join(fields)} FROM {obj} WHERE {where} ORDER BY SystemModstamp, Id"
    rows = 0
    started = time.thread_time()
    page = session.get(f"{base}/queryAll/", params={"q": soql}, headers=headers, timeout=60).json()
    while True:
        for _record in page["records"]:
            rows += 1
        next_url = page.get("nextRecordsUrl")
        if page.get("done") or not next_url:
            break
        page = session.get(f"{emu.instance_url}{next_url}", headers=headers, timeout=60).json()
    return rows, time.thread_time() - started


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of a non-empty list."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


__all__ = [
    "START",
    "EmulatorTime",
    "EngineBench",
    "EngineCpu",
    "Tick",
    "engine_bench",
    "handler_output_silenced",
    "percentile",
    "rest_fetch_floor",
    "salesforce_secret",
    "verdict",
]
