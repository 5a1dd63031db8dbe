"""What one run of the write-back holds while its stages work: the adapters, the outcome so far and
the pending markers it claimed.  A run is one stream batch, or one object's re-drive (sweep, retry)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from sfsync.core.config import Settings
from sfsync.core.exceptions import ConfigurationError
from sfsync.salesforce.ports import WriteBackPort
from sfsync.store.writeback import WriteBackTables
from sfsync.writeback.model import BatchResult, StreamChange, WriteBackDeps, WriteBackStore

#: (object, item key) - or (object, ``DELETE#<record id>``) for a delete intent
MarkKey = tuple[str, str]


@dataclass
class RunContext:
    deps: WriteBackDeps
    owner: str
    tables: WriteBackStore
    result: BatchResult = field(default_factory=BatchResult)
    #: (object, item key) -> the ``_pending_seq`` this run claimed the item with (None: no marker)
    marks: dict[MarkKey, str | None] = field(default_factory=dict)
    #: (object, record id) -> the ``_pending_seq`` of a delete intent this run claimed
    delete_marks: dict[MarkKey, str | None] = field(default_factory=dict)
    #: marks cleared (or intents settled) by this run
    settled: set[MarkKey] = field(default_factory=set)
    #: (object, key) -> the stream sequences (or synthetic ones) of its changes in this run
    sequences: dict[MarkKey, list[str]] = field(default_factory=dict)
    #: failed sequence -> (code, message) of its failure
    why: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: (object, key) -> attempts made before this run / pending since (re-drives only)
    attempts: dict[MarkKey, int] = field(default_factory=dict)
    since: dict[MarkKey, dt.datetime] = field(default_factory=dict)
    _sf: WriteBackPort | None = None

    @classmethod
    def start(cls, deps: WriteBackDeps, owner: str) -> RunContext:
        return cls(deps, owner, WriteBackTables(deps.dynamodb, deps.settings, sleep=deps.sleep), _sf=deps.sf)

    @property
    def settings(self) -> Settings:
        return self.deps.settings

    @property
    def sf(self) -> WriteBackPort:
        """The Salesforce client, made on first use (after the markers are down)."""
        if self._sf is None:
            if self.deps.sf_factory is None:
                raise ConfigurationError("the write-back has no Salesforce client")
            self._sf = self.deps.sf_factory()
        return self._sf

    def table(self, obj: str) -> str:
        """The record table of a two-way object."""
        return self.tables.table(self.settings.registry.get(obj))

    @staticmethod
    def mark_key(obj: str, change: StreamChange) -> MarkKey:
        return (obj, change.mark_key_suffix)

    def fail(self, sequences: Iterable[str], code: str, message: str) -> None:
        """Report records for retry (Lambda's batch item failures; a re-drive backs off)."""
        for sequence in sequences:
            self.result.failed.add(sequence)
            self.why.setdefault(sequence, (code, message))


__all__ = ["MarkKey", "RunContext"]
