"""Configuration: one validated settings model, read once per invocation.

Handlers call :func:`load_settings` at the start of an invocation and pass the result down; no
other engine module reads ``os.environ``.  Every problem is reported in one
:class:`~sfsync.core.exceptions.ConfigurationError`, so a function never starts half-configured.

Variables (docs/engine-design.md, plus the engine tunables marked *):

``SFSYNC_SECRET_ARN``, ``SFSYNC_STATE_TABLE``, ``SFSYNC_ERRORS_TABLE``, ``SFSYNC_RECORD_TABLES``
(JSON family -> table), ``SFSYNC_OBJECTS``, ``SFSYNC_CUSTOM_OBJECTS``, ``SFSYNC_PAUSE_SECONDS``
(300), ``SFSYNC_API_BUDGET_PERCENT`` (80), ``SFSYNC_OBJECT_SYNC_FUNCTION``,
``SFSYNC_FULL_SYNC_STATE_MACHINE_ARN``; * ``SFSYNC_OVERLAP_SECONDS`` (600, the look-back below the
watermark), * ``SFSYNC_SAFETY_LAG_SECONDS`` (60, distance kept from Salesforce's "now"),
* ``SFSYNC_PAGE_SIZE`` (2000), * ``SFSYNC_OBJECT_OPTIONS`` (JSON object name -> options of
:class:`~sfsync.core.registry.ObjectSpec`: include_fields, exclude_fields, pause_seconds,
tombstone_retention_days, include_formulas, formula_refresh_seconds, reconcile_seconds,
bulk_threshold), * ``SFSYNC_ERROR_RETENTION_DAYS`` (30), * ``SFSYNC_BULK_THRESHOLD`` (10000: a window
with more changed rows is read with Bulk API 2.0), * ``SFSYNC_FORMULA_REFRESH_SECONDS`` (21600: how
often formula fields are re-read), * ``SFSYNC_RECONCILE_SECONDS`` (86400: how often objects without
a recycle bin get an Id reconciliation), * ``SFSYNC_ORG_BACKOFF_SECONDS`` (300: how long the whole
org is left alone after ``REQUEST_LIMIT_EXCEEDED``), * ``SFSYNC_WRITEBACK`` (JSON object: two-way
object -> write-back options, see :class:`WriteBackOptions`), ``SFSYNC_CDC_ENABLED`` (``true`` when
the stack receives change events through Event Relay, :mod:`sfsync.changes`), * ``SFSYNC_CDC_PAUSE_SECONDS``
(900: the pause of an object whose change events flow healthily).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sfsync.core.exceptions import ConfigurationError
from sfsync.core.registry import FALLBACK_CONFLICT_POLICY, Registry, build_registry, default_conflict_policy


def _csv(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


#: Conflict policies of the write-back (a field changed on both sides since the base).
CONFLICT_POLICIES = ("local", "salesforce", "recent", "nonempty")
_WRITEBACK_KEYS = {"conflict", "fields", "external_id_field", "allow_deletes", "auto_assign"}
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class WriteBackOptions(BaseModel):
    """Write-back options of one two-way object (``SFSYNC_WRITEBACK``'s value for it).

    ``conflict``: the object's policy when both sides changed a field since the base (``local``,
    ``salesforce``, ``recent`` = most recent write wins, ``nonempty`` = a non-empty value beats an
    empty one, ties fall back to the object's default); ``fields``: per-field policies;
    ``external_id_field``: local creates upsert by this field (exactly once by construction);
    ``allow_deletes``: local deletes are pushed (off by default: recorded as refused);
    ``auto_assign``: send ``Sforce-Auto-Assign: TRUE`` (assignment rules run).
    """

    model_config = ConfigDict(frozen=True)

    conflict: str = FALLBACK_CONFLICT_POLICY
    fields: dict[str, str] = Field(default_factory=dict)
    external_id_field: str | None = None
    allow_deletes: bool = False
    auto_assign: bool = False

    def policy_for(self, field: str) -> str:
        return self.fields.get(field, self.conflict)


def parse_writeback(raw: Mapping[str, Any], two_way: set[str]) -> tuple[dict[str, WriteBackOptions], list[str]]:
    """``SFSYNC_WRITEBACK`` as options per two-way object (defaults filled in) and the problems found."""
    problems: list[str] = []
    result: dict[str, WriteBackOptions] = {
        name: WriteBackOptions(conflict=default_conflict_policy(name)) for name in sorted(two_way)
    }
    for name, options in raw.items():
        where = f"SFSYNC_WRITEBACK.{name}"
        if name not in two_way:
            problems.append(f"{where}: {name} is not a configured two-way object ({', '.join(sorted(two_way))})")
            continue
        if not isinstance(options, dict):
            problems.append(f"{where} must be a JSON object")
            continue
        unknown = sorted(set(options) - _WRITEBACK_KEYS)
        if unknown:  # reported, and the known options are still checked: every problem at once
            problems.append(
                f"{where}: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(_WRITEBACK_KEYS))})"
            )
        values: dict[str, Any] = {"conflict": default_conflict_policy(name)}
        conflict = options.get("conflict", values["conflict"])
        if conflict not in CONFLICT_POLICIES:
            problems.append(f"{where}.conflict: unknown policy {conflict!r} (known: {', '.join(CONFLICT_POLICIES)})")
        values["conflict"] = conflict
        fields = options.get("fields", {})
        if not isinstance(fields, dict):
            problems.append(f"{where}.fields must be a JSON object of field -> policy")
            fields = {}
        for field, policy in fields.items():
            if not isinstance(field, str) or not _API_NAME.match(field):
                problems.append(f"{where}.fields: {field!r} is not a field API name")
            elif policy not in CONFLICT_POLICIES:
                problems.append(
                    f"{where}.fields.{field}: unknown policy {policy!r} (known: {', '.join(CONFLICT_POLICIES)})"
                )
        values["fields"] = fields
        ext = options.get("external_id_field")
        if ext is not None and (not isinstance(ext, str) or not _API_NAME.match(ext)):
            problems.append(f"{where}.external_id_field: {ext!r} is not a field API name")
        values["external_id_field"] = ext
        for flag in ("allow_deletes", "auto_assign"):
            if flag in options:
                if not isinstance(options[flag], bool):
                    problems.append(f"{where}.{flag} must be true or false")
                values[flag] = options[flag]
        if not any(p.startswith(where) for p in problems):
            result[name] = WriteBackOptions.model_validate(values)
    return result, problems


class Settings(BaseModel):
    """Validated engine settings (immutable)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    secret_arn: str | None = None
    state_table: str = Field(min_length=1)
    errors_table: str | None = None
    record_tables: dict[str, str] = Field(default_factory=dict)
    objects: list[str] | None = None
    custom_objects: list[str] = Field(default_factory=list)
    object_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    pause_seconds: int = Field(default=300, ge=0)
    api_budget_percent: float = Field(default=80.0, gt=0, le=100)
    overlap_seconds: int = Field(default=600, ge=0)
    safety_lag_seconds: int = Field(default=60, ge=0)
    page_size: int = Field(default=2000, ge=200, le=2000)
    error_retention_days: int = Field(default=30, ge=1)
    bulk_threshold: int = Field(default=10_000, ge=1)
    formula_refresh_seconds: int = Field(default=6 * 3600, ge=0)
    reconcile_seconds: int = Field(default=86_400, ge=0)
    org_backoff_seconds: int = Field(default=300, ge=1)
    cdc_enabled: bool = False
    cdc_pause_seconds: int = Field(default=900, ge=0)
    object_sync_function: str | None = None
    full_sync_state_machine_arn: str | None = None
    registry: Registry
    writeback: dict[str, WriteBackOptions] = Field(default_factory=dict)

    @field_validator("record_tables")
    @classmethod
    def _tables_named(cls, value: dict[str, str]) -> dict[str, str]:
        empty = [family for family, table in value.items() if not table]
        if empty:
            raise ValueError(f"empty table name for {', '.join(empty)}")
        return value

    def table_for(self, family: str) -> str:
        try:
            return self.record_tables[family]
        except KeyError:
            raise ConfigurationError(f"SFSYNC_RECORD_TABLES has no table for family {family}") from None

    def require(self, *names: str) -> None:
        """Raise one ConfigurationError naming every listed setting that is unset."""
        missing = [name for name in names if not getattr(self, name)]
        if missing:
            env = ", ".join(_ENV_NAMES[name] for name in missing)
            raise ConfigurationError(f"missing configuration: {env}")


_ENV_NAMES = {
    "secret_arn": "SFSYNC_SECRET_ARN",
    "state_table": "SFSYNC_STATE_TABLE",
    "errors_table": "SFSYNC_ERRORS_TABLE",
    "record_tables": "SFSYNC_RECORD_TABLES",
    "objects": "SFSYNC_OBJECTS",
    "custom_objects": "SFSYNC_CUSTOM_OBJECTS",
    "object_options": "SFSYNC_OBJECT_OPTIONS",
    "pause_seconds": "SFSYNC_PAUSE_SECONDS",
    "api_budget_percent": "SFSYNC_API_BUDGET_PERCENT",
    "overlap_seconds": "SFSYNC_OVERLAP_SECONDS",
    "safety_lag_seconds": "SFSYNC_SAFETY_LAG_SECONDS",
    "page_size": "SFSYNC_PAGE_SIZE",
    "error_retention_days": "SFSYNC_ERROR_RETENTION_DAYS",
    "bulk_threshold": "SFSYNC_BULK_THRESHOLD",
    "formula_refresh_seconds": "SFSYNC_FORMULA_REFRESH_SECONDS",
    "reconcile_seconds": "SFSYNC_RECONCILE_SECONDS",
    "org_backoff_seconds": "SFSYNC_ORG_BACKOFF_SECONDS",
    "cdc_enabled": "SFSYNC_CDC_ENABLED",
    "cdc_pause_seconds": "SFSYNC_CDC_PAUSE_SECONDS",
    "object_sync_function": "SFSYNC_OBJECT_SYNC_FUNCTION",
    "full_sync_state_machine_arn": "SFSYNC_FULL_SYNC_STATE_MACHINE_ARN",
    "writeback": "SFSYNC_WRITEBACK",
}


def _json_object(env: Mapping[str, str], name: str, problems: list[str]) -> dict[str, Any]:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        problems.append(f"{name} is not valid JSON ({exc.msg})")
        return {}
    if not isinstance(value, dict):
        problems.append(f"{name} must be a JSON object")
        return {}
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings from ``env`` (default: the process environment)."""
    source: Mapping[str, str] = os.environ if env is None else env
    problems: list[str] = []
    raw: dict[str, Any] = {
        "secret_arn": source.get("SFSYNC_SECRET_ARN") or None,
        "state_table": source.get("SFSYNC_STATE_TABLE", ""),
        "errors_table": source.get("SFSYNC_ERRORS_TABLE") or None,
        "record_tables": _json_object(source, "SFSYNC_RECORD_TABLES", problems),
        "objects": _csv(source.get("SFSYNC_OBJECTS")),
        "custom_objects": _csv(source.get("SFSYNC_CUSTOM_OBJECTS")) or [],
        "object_options": _json_object(source, "SFSYNC_OBJECT_OPTIONS", problems),
        "object_sync_function": source.get("SFSYNC_OBJECT_SYNC_FUNCTION") or None,
        "full_sync_state_machine_arn": source.get("SFSYNC_FULL_SYNC_STATE_MACHINE_ARN") or None,
    }
    for name in (
        "pause_seconds",
        "api_budget_percent",
        "overlap_seconds",
        "safety_lag_seconds",
        "page_size",
        "error_retention_days",
        "bulk_threshold",
        "formula_refresh_seconds",
        "reconcile_seconds",
        "org_backoff_seconds",
        "cdc_enabled",
        "cdc_pause_seconds",
    ):
        value = source.get(_ENV_NAMES[name])
        if value is not None and value.strip():
            raw[name] = value.strip()

    try:
        raw["registry"] = build_registry(raw["objects"], raw["custom_objects"], raw["object_options"])
    except ConfigurationError as exc:
        problems.append(str(exc))
        raw["registry"] = build_registry()
    two_way = {spec.name for spec in raw["registry"] if spec.writes_back}
    raw["writeback"], writeback_problems = parse_writeback(_json_object(source, "SFSYNC_WRITEBACK", problems), two_way)
    problems.extend(writeback_problems)

    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            problems.append(f"{_ENV_NAMES.get(field, field)}: {error['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None

    if settings.record_tables:
        missing = sorted(settings.registry.families() - set(settings.record_tables))
        if missing:
            problems.append(f"SFSYNC_RECORD_TABLES has no table for famil(ies) {', '.join(missing)}")
    if problems:
        raise ConfigurationError("invalid configuration: " + "; ".join(problems))
    return settings


def configured_secret_arn(env: Mapping[str, str] | None = None) -> str | None:
    """``SFSYNC_SECRET_ARN`` alone (to read the secret even when other settings are wrong)."""
    source: Mapping[str, str] = os.environ if env is None else env
    return source.get("SFSYNC_SECRET_ARN") or None


def load_secret(arn: str, *, max_age: int = 300) -> dict[str, Any]:
    """The Salesforce secret (JSON object), through Powertools Parameters with caching."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

    try:
        value = parameters.get_secret(arn, transform="json", max_age=max_age)
    except TransformParameterError as exc:
        raise ConfigurationError(f"secret {arn} is not valid JSON") from exc
    except GetParameterError as exc:
        raise ConfigurationError(f"secret {arn} could not be read: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigurationError(f"secret {arn} must be a JSON object")
    return value


__all__ = [
    "CONFLICT_POLICIES",
    "Settings",
    "WriteBackOptions",
    "configured_secret_arn",
    "load_secret",
    "load_settings",
    "parse_writeback",
]
