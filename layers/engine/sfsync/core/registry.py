"""The object registry: every synced Salesforce object as data.

The dispatcher, the cycle, the full copy and the write-back iterate this registry; none of them
branches on an object's name.  A behaviour that differs per object is a field of
:class:`ObjectSpec`, set here (standard objects) or from configuration (options and custom
objects, see :func:`build_registry`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from sfsync.core.exceptions import ConfigurationError

Direction = Literal["both", "inbound"]

#: Table families (keys of ``SFSYNC_RECORD_TABLES``).
FAMILIES: tuple[str, ...] = (
    "Lead",
    "Contact",
    "Account",
    "User",
    "Opportunity",
    "Campaign",
    "CampaignMember",
    "Activity",
    "Custom",
)

#: The write-back's conflict policy of a two-way object that sets none (Salesforce's value wins).
FALLBACK_CONFLICT_POLICY = "salesforce"

_CUSTOM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__c$")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Conversion:
    """A record of the object can be converted into a record of ``target`` (a Lead into a Contact):
    ``flag`` tells it is converted, ``target_id`` names the record it became.  The write-back pushes a
    converted record's local edits to that record (fields of the same name the target can update)."""

    target: str
    flag: str
    target_id: str


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """How one Salesforce object is synced.

    ``lookups`` are the item attributes the family table indexes (GSI keys); they are stored only
    when non-null, so the indexes stay sparse.  ``include_fields`` (when non-empty) restricts the
    SELECT list to those fields plus the engine's required ones; ``exclude_fields`` removes fields.
    ``pause_seconds`` overrides the global pause; ``tombstone_retention_days`` sets a TTL on
    tombstones (None keeps them).  ``hard_delete_without_recycle_bin``: deletes skip the recycle
    bin, so only getDeleted / an Id reconciliation sees them.  ``archivable``: rows may be
    archived (``IsArchived``), visible to queryAll only.  ``include_formulas``: formula fields
    change without a ``SystemModstamp`` change, so by default they are left out of incremental
    reads and re-read by a formula refresh every ``formula_refresh_seconds`` (None: the global
    setting).  ``reconcile_seconds``: how often an Id reconciliation runs for an object without a
    recycle bin (None: the global setting).  ``bulk_threshold``: above this many changed rows a
    window is read with Bulk API 2.0 (None: the global setting).  ``key_prefix``: the first three
    characters of the object's record Ids (the write-back tells a Salesforce Id from a local key by it;
    None: any Id shape).  ``conflict``: the write-back's default conflict policy for a two-way object
    (``SFSYNC_WRITEBACK`` overrides it).  ``converts_to``: what a converted record becomes (see
    :class:`Conversion`; None: the object is not converted).
    """

    name: str
    family: str
    key: str = "Id"
    cursor: str = "SystemModstamp"
    direction: Direction = "inbound"
    lookups: tuple[str, ...] = ()
    include_fields: tuple[str, ...] = ()
    exclude_fields: tuple[str, ...] = ()
    pause_seconds: int | None = None
    tombstone_retention_days: int | None = None
    hard_delete_without_recycle_bin: bool = False
    archivable: bool = False
    include_formulas: bool = False
    custom: bool = False
    formula_refresh_seconds: int | None = None
    reconcile_seconds: int | None = None
    bulk_threshold: int | None = None
    key_prefix: str | None = None
    conflict: str = FALLBACK_CONFLICT_POLICY
    converts_to: Conversion | None = None

    @property
    def writes_back(self) -> bool:
        return self.direction == "both"

    def pause(self, default_seconds: int) -> int:
        return default_seconds if self.pause_seconds is None else self.pause_seconds


STANDARD_OBJECTS: tuple[ObjectSpec, ...] = (
    # The default conflict policies follow Marketo: the local side wins for Leads, Salesforce for Contacts.
    ObjectSpec(
        "Lead",
        "Lead",
        direction="both",
        lookups=("Email", "OwnerId"),
        key_prefix="00Q",
        conflict="local",
        converts_to=Conversion("Contact", "IsConverted", "ConvertedContactId"),
    ),
    ObjectSpec("Contact", "Contact", direction="both", lookups=("Email", "AccountId", "OwnerId"), key_prefix="003"),
    ObjectSpec("Campaign", "Campaign", direction="both", lookups=("OwnerId",), key_prefix="701"),
    ObjectSpec(
        "CampaignMember",
        "CampaignMember",
        direction="both",
        lookups=("CampaignId", "LeadOrContactId"),
        hard_delete_without_recycle_bin=True,
        key_prefix="00v",
        conflict="local",
    ),
    ObjectSpec("Account", "Account", lookups=("OwnerId",)),
    ObjectSpec("User", "User"),
    ObjectSpec("Opportunity", "Opportunity", lookups=("AccountId", "OwnerId")),
    ObjectSpec(
        "OpportunityContactRole",
        "Opportunity",
        lookups=("OpportunityId", "ContactId"),
        hard_delete_without_recycle_bin=True,
    ),
    ObjectSpec("Task", "Activity", lookups=("WhoId", "WhatId", "sobject"), archivable=True),
    ObjectSpec("Event", "Activity", lookups=("WhoId", "WhatId", "sobject"), archivable=True),
)

#: Record-Id key prefix of each standard object that has one set (the write-back's Id check).
KEY_PREFIXES: dict[str, str] = {spec.name: spec.key_prefix for spec in STANDARD_OBJECTS if spec.key_prefix}
#: The write-back's default conflict policy of each two-way standard object.
DEFAULT_CONFLICT_POLICY: dict[str, str] = {spec.name: spec.conflict for spec in STANDARD_OBJECTS if spec.writes_back}


def default_conflict_policy(name: str) -> str:
    """The write-back's default conflict policy of the object ``name`` (``SFSYNC_WRITEBACK`` overrides it)."""
    return DEFAULT_CONFLICT_POLICY.get(name, FALLBACK_CONFLICT_POLICY)


#: Objects Bulk API 2.0 cannot query (Salesforce's documented exclusions, as other tools list them).
BULK_UNSUPPORTED_OBJECTS: frozenset[str] = frozenset(
    {
        "AcceptedEventRelation",
        "ActivityHistory",
        "AggregateResult",
        "Attachment",
        "CaseStatus",
        "ContentDocumentLink",
        "DeclinedEventRelation",
        "EventWhoRelation",
        "FieldDefinition",
        "OpenActivity",
        "RecentlyViewed",
        "TaskPriority",
        "TaskStatus",
        "TaskWhoRelation",
        "UndecidedEventRelation",
        "UserRecordAccess",
        "Vote",
    }
)

_OPTION_KEYS = {
    "include_fields",
    "exclude_fields",
    "pause_seconds",
    "tombstone_retention_days",
    "include_formulas",
    "formula_refresh_seconds",
    "reconcile_seconds",
    "bulk_threshold",
}


class Registry:
    """The configured objects, in configuration order (listed standard objects, then custom ones)."""

    def __init__(self, specs: Sequence[ObjectSpec]) -> None:
        self._specs: dict[str, ObjectSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ConfigurationError(f"object {spec.name} is configured twice")
            if spec.family not in FAMILIES:
                raise ConfigurationError(f"object {spec.name} has unknown table family {spec.family!r}")
            self._specs[spec.name] = spec

    def __iter__(self) -> Iterator[ObjectSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def names(self) -> list[str]:
        return list(self._specs)

    def get(self, name: str) -> ObjectSpec:
        try:
            return self._specs[name]
        except KeyError:
            configured = ", ".join(self._specs)
            raise ConfigurationError(f"object {name!r} is not configured for sync (configured: {configured})") from None

    def families(self) -> set[str]:
        return {spec.family for spec in self}


def standard_object_names() -> list[str]:
    return [spec.name for spec in STANDARD_OBJECTS]


def custom_spec(name: str) -> ObjectSpec:
    return ObjectSpec(name, "Custom", lookups=("sobject",), custom=True)


def _apply_options(spec: ObjectSpec, options: Mapping[str, Any]) -> tuple[ObjectSpec, list[str]]:
    """``spec`` with ``options`` applied, and every problem found (all of them, not the first)."""
    problems: list[str] = []
    unknown = sorted(set(options) - _OPTION_KEYS)
    if unknown:
        problems.append(f"unknown option(s) for {spec.name}: {', '.join(unknown)}")
    changes: dict[str, Any] = {}
    for key in ("include_fields", "exclude_fields"):
        if key in options:
            values = options[key]
            if not isinstance(values, list) or not all(isinstance(v, str) and _FIELD_NAME.match(v) for v in values):
                problems.append(f"{spec.name}.{key} must be a list of field API names")
            else:
                changes[key] = tuple(values)
    for key in ("pause_seconds", "tombstone_retention_days", "formula_refresh_seconds", "reconcile_seconds"):
        if key in options:
            value = options[key]
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                problems.append(f"{spec.name}.{key} must be a non-negative integer or null")
            else:
                changes[key] = value
    if "bulk_threshold" in options:
        value = options["bulk_threshold"]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            problems.append(f"{spec.name}.bulk_threshold must be a positive integer or null")
        else:
            changes["bulk_threshold"] = value
    if "include_formulas" in options:
        if not isinstance(options["include_formulas"], bool):
            problems.append(f"{spec.name}.include_formulas must be true or false")
        else:
            changes["include_formulas"] = options["include_formulas"]
    return replace(spec, **changes), problems


def build_registry(
    objects: Sequence[str] | None = None,
    custom_objects: Sequence[str] = (),
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Registry:
    """Registry for the configured objects.

    ``objects`` None means every standard object.  Unknown standard names, malformed custom names
    and options for objects that are not configured are reported together in one
    :class:`ConfigurationError`, so nothing starts half-configured.
    """
    standard = {spec.name: spec for spec in STANDARD_OBJECTS}
    wanted = list(objects) if objects is not None else list(standard)
    problems: list[str] = []

    unknown = [name for name in wanted if name not in standard]
    if unknown:
        problems.append(
            f"unknown object(s) in SFSYNC_OBJECTS: {', '.join(unknown)} (known: {', '.join(standard)};"
            " custom objects go in SFSYNC_CUSTOM_OBJECTS)"
        )
    bad_custom = [name for name in custom_objects if not _CUSTOM_NAME.match(name)]
    if bad_custom:
        problems.append(f"malformed custom object name(s) in SFSYNC_CUSTOM_OBJECTS: {', '.join(bad_custom)}")
    duplicates = sorted({n for n in [*wanted, *custom_objects] if [*wanted, *custom_objects].count(n) > 1})
    if duplicates:
        problems.append(f"object(s) listed twice: {', '.join(duplicates)}")

    specs = [standard[name] for name in wanted if name in standard]
    specs += [custom_spec(name) for name in custom_objects if _CUSTOM_NAME.match(name) and name not in wanted]
    by_name = {spec.name: spec for spec in specs}
    for name, opts in (options or {}).items():
        if name not in by_name:
            problems.append(f"options given for {name}, which is not configured")
            continue
        if not isinstance(opts, Mapping):
            problems.append(f"options of {name} must be a JSON object")
            continue
        by_name[name], option_problems = _apply_options(by_name[name], opts)
        problems.extend(option_problems)
    if problems:
        raise ConfigurationError("; ".join(problems))
    return Registry(list(by_name.values()))


__all__ = [
    "BULK_UNSUPPORTED_OBJECTS",
    "DEFAULT_CONFLICT_POLICY",
    "FALLBACK_CONFLICT_POLICY",
    "FAMILIES",
    "KEY_PREFIXES",
    "STANDARD_OBJECTS",
    "Conversion",
    "Direction",
    "ObjectSpec",
    "Registry",
    "build_registry",
    "custom_spec",
    "default_conflict_policy",
    "standard_object_names",
]
