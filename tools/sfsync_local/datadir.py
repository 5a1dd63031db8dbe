"""``--data-dir``: the local stack's DynamoDB tables kept on disk between runs of ``sfsync run``.

Layout of a data directory::

    DIR/sfsync-local-data.json      the marker and manifest (format, format version, what is saved where)
    DIR/sfsync-local-data.lock      held (flock) by the process using the directory
    DIR/tables/<LogicalId>-<n>.jsonl one item per line, DynamoDB JSON ({"Id": {"S": "..."}, ...})

Every table of the template (record tables, state table, errors table) is saved.  A save takes one
consistent copy of all tables (no DynamoDB request runs meanwhile), writes each changed table to a
new file (written, flushed to disk, renamed), then replaces the manifest atomically, and only then
removes the files the old manifest named: a process killed at any moment leaves the previous or the
new save, never a mix.  :meth:`DataDir.load` puts the items back before the first tick, without
stream records (a restore, not edits), so the engine resumes from the saved watermarks.

A directory is accepted only when it is new, empty, or has this project's marker with this format
version; anything else is refused before anything is written (:meth:`DataDir.inspect`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .runner import EXIT_USAGE, CliError, iso_ms, utc_now

__all__ = ["FORMAT", "FORMAT_VERSION", "LOCK_NAME", "MARKER_NAME", "DataDir", "SaveResult"]

MARKER_NAME = "sfsync-local-data.json"
LOCK_NAME = "sfsync-local-data.lock"
TABLES_DIR = "tables"
FORMAT = "sfsync-local-data"
FORMAT_VERSION = 1
#: Items per BatchWriteItem when a table is restored (DynamoDB's limit).
_BATCH = 25


@dataclass(frozen=True)
class SaveResult:
    saved_at: str
    tables_written: int  # tables whose file changed
    items: int  # items in all tables


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, chunks: Iterator[bytes] | list[bytes]) -> None:
    """Write ``path`` through a temporary file in its directory: flushed, fsynced, renamed."""
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as file:
        for chunk in chunks:
            file.write(chunk)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    _fsync_directory(path.parent)


def _binary(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot save a {type(value).__name__} value")


def _refuse(message: str) -> CliError:
    return CliError(message, exit_code=EXIT_USAGE)


class DataDir:
    """One data directory (see the module docstring)."""

    def __init__(self, path: Path, manifest: dict[str, Any] | None) -> None:
        self.path = path
        self.manifest = manifest  # None: a new or empty directory
        self.org: str | None = None  # what this run syncs (the token URL), recorded at each save
        self._lock_file: TextIO | None = None
        self._saved_writes: int | None = None

    # ------------------------------------------------------------------ checking and claiming
    @classmethod
    def inspect(cls, path: str | Path) -> DataDir:
        """Check ``path`` without writing anything; refuse (exit 2) what is not ours or not readable."""
        directory = Path(path).expanduser()
        if directory.exists() and not directory.is_dir():
            raise _refuse(f"--data-dir {directory} exists and is not a directory")
        if not directory.exists():
            return cls(directory, None)
        marker = directory / MARKER_NAME
        if not marker.exists():
            if any(directory.iterdir()):
                raise _refuse(
                    f"--data-dir {directory} is not an sfsync data directory: it is not empty and has no "
                    f"{MARKER_NAME}; give a new or empty directory, or one an earlier `sfsync run --data-dir` made"
                )
            return cls(directory, None)
        try:
            manifest = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _refuse(f"--data-dir {directory}: cannot read {MARKER_NAME}: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise _refuse(f"--data-dir {directory}: {MARKER_NAME} is not an sfsync data directory marker")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise _refuse(
                f"--data-dir {directory} holds format version {version}; this sfsync reads format version "
                f"{FORMAT_VERSION}. Use the sfsync that wrote it, or give another directory"
            )
        tables = manifest.get("tables")
        if not isinstance(tables, dict):
            raise _refuse(f"--data-dir {directory}: {MARKER_NAME} has no table list")
        for logical_id, entry in tables.items():
            file = directory / str((entry or {}).get("file", ""))
            if not isinstance(entry, dict) or not file.is_file():
                raise _refuse(f"--data-dir {directory} is damaged: the file of {logical_id} is missing")
        data_dir = cls(directory, manifest)
        holder = data_dir._probe_lock()
        if holder is not None:
            raise _refuse(f"--data-dir {directory} is in use by another sfsync process ({holder})")
        return data_dir

    def _probe_lock(self) -> str | None:
        """Who holds the directory's lock (None: nobody), without taking it."""
        lock_path = self.path / LOCK_NAME
        if not lock_path.exists():
            return None
        with open(lock_path, encoding="utf-8") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return file.read().strip() or "unknown process"
            fcntl.flock(file, fcntl.LOCK_UN)
        return None

    def claim(self, *, created_by: str) -> None:
        """Take the directory for this process: create it (and its marker) when new, hold its lock."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock_file = open(self.path / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        except OSError as exc:
            raise _refuse(f"--data-dir {self.path}: cannot create it: {exc.strerror or exc}") from None
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise _refuse(f"--data-dir {self.path} is in use by another sfsync process") from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"pid {os.getpid()}, {created_by}\n")
        lock_file.flush()
        self._lock_file = lock_file
        if self.manifest is None:
            self.manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": iso_ms(utc_now()),
                "created_by": created_by,
                "saved_at": None,
                "generation": 0,
                "tables": {},
            }
            self._write_manifest(self.manifest)

    def release(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    @property
    def saved_at(self) -> str | None:
        return None if self.manifest is None else self.manifest.get("saved_at")

    def _write_manifest(self, manifest: Mapping[str, Any]) -> None:
        _write_atomically(self.path / MARKER_NAME, [json.dumps(manifest, indent=2).encode() + b"\n"])

    # ------------------------------------------------------------------ restoring
    def load(self, stack: Any, *, org: str | None = None, out: TextIO | None = None) -> int:
        """Put the saved items back into the stack's (empty) tables; returns how many.

        Refuses (exit 2) a save whose tables the template no longer has or keys differently.  Writes
        make no stream records (the write-back sees no edits: these are Salesforce's values and the
        applications' edits as they were saved).
        """
        from sfsync.store.ddb_wire import WireCalls

        from .lambda_runtime import dynamodb_write_count, suppress_stream_records

        manifest = self.manifest or {}
        saved: dict[str, Any] = manifest.get("tables") or {}
        current = self._tables(stack)
        unknown = sorted(set(saved) - set(current))
        if unknown:
            raise _refuse(f"--data-dir {self.path} holds tables the template does not define: {', '.join(unknown)}")
        client = stack.boto3_client("dynamodb")
        for logical_id, entry in saved.items():
            key_schema = client.describe_table(TableName=current[logical_id])["Table"]["KeySchema"]
            if key_schema != entry.get("key_schema"):
                raise _refuse(
                    f"--data-dir {self.path}: {logical_id} was saved with keys {entry.get('key_schema')}, "
                    f"the template's table has {key_schema}"
                )
        if org and manifest.get("org") and manifest["org"] != org and out is not None:
            print(f"note: the copy in {self.path} was made from {manifest['org']}; now syncing {org}", file=out)
        self.org = org
        wire = WireCalls(client)
        restored = 0
        with suppress_stream_records():
            for logical_id, entry in saved.items():
                table = current[logical_id]
                batch: list[dict[str, Any]] = []
                for item in self._items(self.path / str(entry["file"])):
                    batch.append({"PutRequest": {"Item": item}})
                    if len(batch) == _BATCH:
                        self._write_batch(wire, table, batch)
                        restored += len(batch)
                        batch = []
                if batch:
                    self._write_batch(wire, table, batch)
                    restored += len(batch)
        self._saved_writes = dynamodb_write_count()
        return restored

    @staticmethod
    def _write_batch(wire: Any, table: str, batch: list[dict[str, Any]]) -> None:
        request: dict[str, Any] = {table: batch}
        for _ in range(20):
            response = wire.batch_write_item(request)
            unprocessed = response.get("UnprocessedItems") or {}
            if not unprocessed:
                return
            request = unprocessed
        raise CliError(f"cannot restore {table}: items stay unprocessed", exit_code=1)

    def _items(self, path: Path) -> Iterator[dict[str, Any]]:
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise _refuse(f"--data-dir {self.path}: {path.name} line {number} is damaged: {exc.msg}") from None
                yield item

    @staticmethod
    def _tables(stack: Any) -> dict[str, str]:
        """The template's tables: logical id -> physical name."""
        return {
            logical_id: str(stack.table_name(logical_id))
            for logical_id in stack.template.resources_of_type("AWS::DynamoDB::Table")
            if stack.template.resource_enabled(logical_id)
        }

    # ------------------------------------------------------------------ saving
    def changed_since_save(self) -> bool:
        from .lambda_runtime import dynamodb_write_count

        return self._saved_writes is None or dynamodb_write_count() != self._saved_writes

    def save(self, stack: Any) -> SaveResult:
        """Save every table (see the module docstring); tables whose content did not change keep their file."""
        from .lambda_runtime import dynamodb_requests_paused, dynamodb_write_count

        if self.manifest is None or self._lock_file is None:
            raise RuntimeError("claim() the data directory before saving into it")
        tables = self._tables(stack)
        with dynamodb_requests_paused():
            writes = dynamodb_write_count()
            snapshot = {logical_id: self._table_lines(stack, name) for logical_id, name in tables.items()}
        client = stack.boto3_client("dynamodb")
        generation = int(self.manifest.get("generation") or 0) + 1
        old_tables: dict[str, Any] = dict(self.manifest.get("tables") or {})
        new_tables: dict[str, Any] = {}
        (self.path / TABLES_DIR).mkdir(exist_ok=True)
        written = 0
        total = 0
        for logical_id, lines in snapshot.items():
            digest = hashlib.sha256(b"".join(lines)).hexdigest()
            total += len(lines)
            previous = old_tables.get(logical_id)
            if previous and previous.get("sha256") == digest and (self.path / previous["file"]).is_file():
                new_tables[logical_id] = previous
                continue
            relative = f"{TABLES_DIR}/{logical_id}-{generation}.jsonl"
            _write_atomically(self.path / relative, lines)
            written += 1
            new_tables[logical_id] = {
                "table_name": tables[logical_id],
                "file": relative,
                "items": len(lines),
                "sha256": digest,
                "key_schema": client.describe_table(TableName=tables[logical_id])["Table"]["KeySchema"],
            }
        saved_at = iso_ms(utc_now())
        manifest = {
            **self.manifest,
            "saved_at": saved_at,
            "generation": generation,
            "stack_name": stack.stack_name,
            "region": stack.region,
            "org": self.org or self.manifest.get("org"),
            "tables": new_tables,
        }
        self._write_manifest(manifest)
        self.manifest = manifest
        self._saved_writes = writes
        keep = {entry["file"] for entry in new_tables.values()}
        for path in (self.path / TABLES_DIR).iterdir():
            if f"{TABLES_DIR}/{path.name}" not in keep:
                with contextlib.suppress(OSError):
                    path.unlink()
        return SaveResult(saved_at, written, total)

    @staticmethod
    def _table_lines(stack: Any, name: str) -> list[bytes]:
        """The table's items, one DynamoDB JSON line each, straight from moto (the caller pauses DynamoDB
        requests, so every table is copied at the same instant)."""
        from moto.dynamodb.models import dynamodb_backends

        table = dynamodb_backends[stack.account_id][stack.region].get_table(name)
        return [
            json.dumps(item.to_json()["Attributes"], separators=(",", ":"), default=_binary).encode() + b"\n"
            for item in table.all_items()
        ]
