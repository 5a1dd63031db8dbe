"""Change events in tests: a local stack with Event Relay on, its relay, and what the engine recorded."""

from __future__ import annotations

from typing import Any

from sfsync.changes.apply import SELECTIONS

from tests.support.compare import salesforce_view, table_items

#: The family table of the objects the change-event tests sync.
TABLES = {
    "Account": "AccountTable",
    "Lead": "LeadTable",
    "Contact": "ContactTable",
    "Opportunity": "OpportunityTable",
}


def cdc_parameters(emulator: Any, objects: str = "Account,Lead,Contact", **extra: str) -> dict[str, str]:
    from sfsync_local.relay import bus_name

    return {
        "SyncObjects": objects,
        "PauseSeconds": "300",
        "EventRelayBusName": bus_name(emulator.org.org_id),
        **extra,
    }


def relay_for(stack: Any, emulator: Any) -> Any:
    from sfsync_local.relay import LocalEventRelay

    SELECTIONS.clear()
    return LocalEventRelay(stack, emulator.org).attach()


def deliver(relay: Any) -> int:
    """Relay what the emulator published and run everything it caused (change events, cycles started)."""
    put = relay.deliver()
    relay.stack.drain()
    return put


def items(stack: Any, obj: str) -> dict[str, dict[str, Any]]:
    return table_items(stack.boto3_client("dynamodb"), stack.table_name(TABLES[obj]), obj)


def item(stack: Any, obj: str, record_id: str) -> dict[str, Any] | None:
    return items(stack, obj).get(record_id)


def assert_record_equal(stack: Any, emulator: Any, obj: str, record_ids: list[str]) -> None:
    """The items of ``record_ids`` hold exactly what Salesforce holds (queryAll, every readable field)."""
    from tests.support.compare import assert_items_equal_view

    view = {k: v for k, v in salesforce_view(emulator, obj).items() if k in record_ids}
    stored = {k: v for k, v in items(stack, obj).items() if k in record_ids}
    assert_items_equal_view(stored, view, obj)


def health(stack: Any, obj: str) -> Any:
    from sfsync.store.state import StateStore

    return StateStore(stack.table_name("StateTable")).cdc_health([obj])[obj]


def event_errors(stack: Any, obj: str) -> list[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    de = TypeDeserializer()
    response = stack.boto3_client("dynamodb").query(
        TableName=stack.table_name("ErrorsTable"),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"ERRORS#{obj}"}},
    )
    rows = [{k: de.deserialize(v) for k, v in raw.items()} for raw in response["Items"]]
    return [row for row in rows if row.get("kind") == "cdc-event"]


def status_text(stack: Any, emulator: Any, objects: list[str]) -> str:
    """What ``sfsync status`` prints for ``objects`` (at the emulator's time)."""
    import datetime as dt

    from sfsync_local.status import format_status, read_status

    now = dt.datetime.fromtimestamp(emulator.clock.now_ms() / 1000, tz=dt.UTC)
    return format_status(read_status(stack.table_name("StateTable"), objects, region=stack.region, now=now))
