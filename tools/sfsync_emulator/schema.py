"""Schema types of the emulated org, and how values are stored and rendered.

This module is the contract every other emulator module codes against:

* ``FieldDef`` / ``ObjectDef`` / ``Schema`` describe the org (the catalogue of objects lives
  in :mod:`sfsync_emulator.catalogue`).
* Records live in SQLite (see :mod:`sfsync_emulator.store`): one table per object, named
  after the object, one column per *stored* field, named after the field.  Compound fields
  (``address``/``location``) and formula fields (``calculated``) are **not** columns: compound
  values are assembled from their component columns, formula values are computed at query
  time from ``FieldDef.formula_sql`` (so they change without a ``SystemModstamp`` change, as
  on a real org).  Every table also has the engine-only column ``_hidden`` (0/1: sharing, the
  integration user cannot see the row).
* Storage encoding (``to_db``) and rendering (``to_json`` / ``to_csv``) of values by field type.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------------------------

STRING_TYPES = frozenset(
    {
        "id",
        "string",
        "textarea",
        "email",
        "phone",
        "url",
        "picklist",
        "multipicklist",
        "combobox",
        "reference",
        "encryptedstring",
    }
)
INT_TYPES = frozenset({"int", "long"})
FLOAT_TYPES = frozenset({"double", "currency", "percent"})
COMPOUND_TYPES = frozenset({"address", "location"})

SOAP_TYPES: Mapping[str, str] = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "textarea": "xsd:string",
    "email": "xsd:string",
    "phone": "xsd:string",
    "url": "xsd:string",
    "picklist": "xsd:string",
    "multipicklist": "xsd:string",
    "combobox": "xsd:string",
    "encryptedstring": "xsd:string",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "long": "xsd:long",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "time": "xsd:time",
    "address": "urn:address",
    "location": "urn:location",
}

# Components of a compound address, keyed by the JSON key of the compound value; the
# component field is <prefix><Suffix> (BillingStreet, MailingPostalCode, Street, ...).
ADDRESS_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("city", "City"),
    ("country", "Country"),
    ("countryCode", "CountryCode"),
    ("geocodeAccuracy", "GeocodeAccuracy"),
    ("latitude", "Latitude"),
    ("longitude", "Longitude"),
    ("postalCode", "PostalCode"),
    ("state", "State"),
    ("stateCode", "StateCode"),
    ("street", "Street"),
)
LOCATION_COMPONENTS: tuple[tuple[str, str], ...] = (("latitude", "Latitude"), ("longitude", "Longitude"))


@dataclass(frozen=True)
class FieldDef:
    """One field of an sObject, with the describe properties of spec §4.2 / §13.4."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    precision: int = 0
    scale: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    # Formula / roll-up: not stored; value = formula_sql evaluated at query time.  The SQL
    # expression refers to the object's own row as ``t`` (e.g. ``"(SELECT a.\"Rating\" FROM
    # \"Account\" a WHERE a.\"Id\" = t.\"AccountId\")"``).
    calculated: bool = False
    formula_sql: str | None = None
    calculated_formula: str | None = None  # the formula text shown in describe
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    compound_field_name: str | None = None  # set on components: BillingStreet -> BillingAddress
    external_id: bool = False
    unique: bool = False
    id_lookup: bool = False
    picklist_values: tuple[str, ...] = ()
    restricted_picklist: bool = False
    default_value: object = None
    defaulted_on_create: bool = False
    custom: bool = False
    # required on create (not nillable, not defaulted) -> REQUIRED_FIELD_MISSING when absent
    required: bool = False

    @property
    def is_compound(self) -> bool:
        return self.type in COMPOUND_TYPES

    @property
    def is_stored(self) -> bool:
        """True when the field is a column of the object's table."""
        return not self.calculated and not self.is_compound

    @property
    def soap_type(self) -> str:
        return SOAP_TYPES.get(self.type, "xsd:string")

    @property
    def polymorphic(self) -> bool:
        return self.type == "reference" and len(self.reference_to) > 1


@dataclass(frozen=True)
class ObjectDef:
    """One sObject: its describe flags, fields and lifecycle rules."""

    name: str
    key_prefix: str
    fields: tuple[FieldDef, ...]
    label: str = ""
    label_plural: str = ""
    custom: bool = False
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    queryable: bool = True
    replicateable: bool = True
    retrieveable: bool = True
    searchable: bool = True
    triggerable: bool = True
    undeletable: bool = True  # False: deletes are hard deletes (no recycle bin)
    mergeable: bool = False
    layoutable: bool = True
    feed_enabled: bool = False
    archivable: bool = False  # Task / Event: IsArchived, hidden from /query
    # Cascade deletes: (child object, reference field) deleted (and undeleted) with the parent.
    cascade_delete: tuple[tuple[str, str], ...] = ()
    # Unique combinations of fields (CampaignMember: (CampaignId, LeadId), (CampaignId, ContactId))
    unique_together: tuple[tuple[str, ...], ...] = ()

    def field(self, name: str) -> FieldDef | None:
        """Case-insensitive field lookup (SOQL and REST are case-insensitive)."""
        return self._by_lower().get(name.lower())

    def _by_lower(self) -> dict[str, FieldDef]:
        cache = self.__dict__.get("_lower_cache")
        if cache is None:
            cache = {f.name.lower(): f for f in self.fields}
            object.__setattr__(self, "_lower_cache", cache)
        return cache

    def relationship(self, name: str) -> FieldDef | None:
        """The reference field whose relationshipName is ``name`` (case-insensitive)."""
        lname = name.lower()
        for f in self.fields:
            if f.relationship_name and f.relationship_name.lower() == lname:
                return f
        return None

    @property
    def stored_fields(self) -> tuple[FieldDef, ...]:
        return tuple(f for f in self.fields if f.is_stored)

    def components(self, compound: FieldDef) -> tuple[tuple[str, FieldDef], ...]:
        """(json key, component field) pairs of a compound field, in the compound's key order.

        Components are named ``<prefix><Suffix>`` where the prefix is the compound's name
        without ``Address`` / ``Location`` (``BillingAddress`` -> ``BillingStreet``, Lead's
        ``Address`` -> ``Street``).
        """
        parts = ADDRESS_COMPONENTS if compound.type == "address" else LOCATION_COMPONENTS
        prefix = re.sub(r"(Address|Location)$", "", compound.name)
        out = []
        for key, suffix in parts:
            f = self.field(prefix + suffix)
            if f is not None and f.compound_field_name == compound.name:
                out.append((key, f))
        return tuple(out)


@dataclass
class Profile:
    """What the integration user may see and edit (FLS + object access).

    Mutable: the admin API changes it at run time; ``Schema.bump()`` must follow so that
    describe's ``If-Modified-Since`` answers change.
    """

    hidden_objects: set[str] = field(default_factory=set)
    hidden_fields: set[tuple[str, str]] = field(default_factory=set)  # (object, field)
    readonly_fields: set[tuple[str, str]] = field(default_factory=set)


class Schema:
    """The org's objects plus the integration user's profile; the single source of describe."""

    def __init__(self, objects: Iterable[ObjectDef], profile: Profile | None = None) -> None:
        self.objects: dict[str, ObjectDef] = {o.name: o for o in objects}
        self._lower = {name.lower(): o for name, o in self.objects.items()}
        self.by_prefix = {o.key_prefix: o for o in self.objects.values()}
        self.profile = profile or Profile()
        # epoch ms of the last metadata change (schema or profile); for If-Modified-Since
        self.modified_ms = 0

    def bump(self, now_ms: int) -> None:
        self.modified_ms = max(self.modified_ms + 1, now_ms)

    def get(self, name: str) -> ObjectDef | None:
        """Case-insensitive lookup of any object, visible or not."""
        return self._lower.get(name.lower())

    def visible_object(self, name: str) -> ObjectDef | None:
        """The object if the integration user can see it, else None."""
        obj = self.get(name)
        if obj is None or obj.name in self.profile.hidden_objects:
            return None
        return obj

    def field_visible(self, obj: ObjectDef, f: FieldDef) -> bool:
        if (obj.name, f.name) in self.profile.hidden_fields:
            return False
        if f.compound_field_name is not None:
            return True
        if f.is_compound:  # a compound is visible when any component is
            return any(self.field_visible(obj, c) for _k, c in obj.components(f))
        return True

    def visible_field(self, obj: ObjectDef, name: str) -> FieldDef | None:
        f = obj.field(name)
        if f is None or not self.field_visible(obj, f):
            return None
        return f

    def visible_fields(self, obj: ObjectDef) -> list[FieldDef]:
        return [f for f in obj.fields if self.field_visible(obj, f)]

    def field_writable(self, obj: ObjectDef, f: FieldDef, *, create: bool) -> bool:
        """createable/updateable as describe reports them for the integration user."""
        if not self.field_visible(obj, f) or f.calculated or f.is_compound:
            return False
        if (obj.name, f.name) in self.profile.readonly_fields:
            return False
        return f.createable if create else f.updateable

    def object_for_id(self, record_id: str) -> ObjectDef | None:
        return self.by_prefix.get(record_id[:3])


# --------------------------------------------------------------------------------------------
# Time and value codecs
# --------------------------------------------------------------------------------------------

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

_DT_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})$"
)
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def parse_datetime_ms(text: str) -> int:
    """Parse any Salesforce/ISO datetime form (§13.2) to epoch milliseconds.

    Accepts ``Z``, ``+0000``, ``+00:00``, 0-9 fractional digits.  Raises ValueError.
    """
    m = _DT_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a datetime: {text!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    ms = int((frac or "0").ljust(3, "0")[:3])
    if tz == "Z":
        offset = dt.timedelta(0)
    else:
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    value = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=dt.timezone(offset))
    return int((value - _EPOCH).total_seconds()) * 1000 + ms


def parse_date(text: str) -> str:
    """Validate a ``YYYY-MM-DD`` date and return it unchanged.  Raises ValueError."""
    m = _DATE_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a date: {text!r}")
    dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    return text.strip()


def ms_to_datetime(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


def datetime_to_ms(value: dt.datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_rest_datetime(ms: int) -> str:
    """REST JSON form: ``2026-11-24T12:41:20.000+0000`` (§0.6, §13.1)."""
    d = ms_to_datetime(ms)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"


def format_csv_datetime(ms: int) -> str:
    """Bulk 2.0 CSV form: ``2026-11-24T12:41:20.000Z`` (§13.1)."""
    d = ms_to_datetime(ms)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class ValueError_(ValueError):
    """A value that does not fit its field's type (becomes a DML error upstream)."""


def to_db(f: FieldDef, value: object) -> object:
    """Encode a JSON/Python value for storage in the field's SQLite column.

    datetime -> INTEGER epoch ms; date -> TEXT ``YYYY-MM-DD``; boolean -> INTEGER 0/1;
    int/long -> INTEGER; double/currency/percent -> REAL; everything else TEXT.
    ``None`` stays ``None``.  Raises :class:`ValueError_` on a value of the wrong type.
    """
    if value is None:
        return None
    t = f.type
    try:
        if t == "datetime":
            if isinstance(value, dt.datetime):
                return datetime_to_ms(value)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return parse_datetime_ms(str(value))
        if t == "date":
            if isinstance(value, dt.date):
                return value.isoformat()
            return parse_date(str(value))
        if t == "boolean":
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return int(value.lower() == "true")
            if isinstance(value, int) and value in (0, 1):
                return value
            raise ValueError_(f"{f.name}: not a boolean")
        if t in INT_TYPES:
            if isinstance(value, bool):
                raise ValueError_(f"{f.name}: not an integer")
            if isinstance(value, float) and not value.is_integer():
                raise ValueError_(f"{f.name}: not an integer")
            return int(value)  # type: ignore[call-overload]
        if t in FLOAT_TYPES:
            if isinstance(value, bool):
                raise ValueError_(f"{f.name}: not a number")
            return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ValueError_):
            raise
        raise ValueError_(f"{f.name}: {exc}") from exc
    if isinstance(value, (dict, list)):
        raise ValueError_(f"{f.name}: not a scalar value")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_json(f: FieldDef, value: object) -> object:
    """Render a stored value as REST JSON (§0.6): datetimes ``…000+0000``, booleans true/false."""
    if value is None:
        return None
    t = f.type
    if t == "datetime":
        return format_rest_datetime(int(value))  # type: ignore[call-overload]
    if t == "boolean":
        return bool(value)
    if t in INT_TYPES:
        return int(value)  # type: ignore[call-overload]
    if t in FLOAT_TYPES:
        return float(value)  # type: ignore[arg-type]
    return value


def to_csv(f: FieldDef, value: object) -> str:
    """Render a stored value for Bulk 2.0 CSV (§5.4): null -> empty, datetimes ``…000Z``."""
    if value is None:
        return ""
    t = f.type
    if t == "datetime":
        return format_csv_datetime(int(value))  # type: ignore[call-overload]
    if t == "boolean":
        return "true" if value else "false"
    if t in FLOAT_TYPES:
        v = float(value)  # type: ignore[arg-type]
        return repr(v) if not v.is_integer() else f"{v:.1f}"
    return str(value)


def sqlite_type(f: FieldDef) -> str:
    t = f.type
    if t in ("datetime", "boolean") or t in INT_TYPES:
        return "INTEGER"
    if t in FLOAT_TYPES:
        return "REAL"
    return "TEXT"


def quote_ident(name: str) -> str:
    """SQLite identifier quoting (names come from the schema, never from requests)."""
    return '"' + name.replace('"', '""') + '"'


def table_ddl(obj: ObjectDef) -> list[str]:
    """CREATE statements of an object's table and its indexes (the storage contract above)."""
    table = quote_ident(obj.name)
    cols = []
    for f in obj.stored_fields:
        col = f"{quote_ident(f.name)} {sqlite_type(f)}"
        if f.name == "Id":
            col += " PRIMARY KEY"
        cols.append(col)
    cols.append('"_hidden" INTEGER NOT NULL DEFAULT 0')
    stmts = [f"CREATE TABLE {table} ({', '.join(cols)})"]
    if obj.field("SystemModstamp") is not None:
        stmts.append(f'CREATE INDEX {quote_ident("ix_" + obj.name + "_stamp")} ON {table} ("SystemModstamp", "Id")')
    for f in obj.stored_fields:
        if f.type == "reference" or f.external_id or f.unique:
            stmts.append(
                f"CREATE INDEX {quote_ident('ix_' + obj.name + '_' + f.name)} ON {table} ({quote_ident(f.name)})"
            )
    return stmts
