"""The admin API (HTTP under /__admin and the Python shortcuts) driving org lifecycle scenarios."""

from __future__ import annotations

import pytest
from sfsync_emulator.schema import parse_datetime_ms as _ms
from simple_salesforce import SalesforceMalformedRequest

pytestmark = pytest.mark.contract


def test_given_admin_http_when_clock_ops_then_virtual_time_moves_forward_only(emu, raw):
    before = raw.admin("clock_get")
    after = raw.admin("clock_advance", seconds=30)
    assert after["now_ms"] >= before["now_ms"] + 30_000
    resp = raw.session.post(f"{emu.instance_url}/__admin/clock_advance", json={"seconds": -5}, timeout=30)
    assert resp.status_code == 400
    assert resp.json()[0]["errorCode"] == "INVALID_ADMIN_REQUEST"


def test_given_unknown_admin_op_or_bad_args_then_array_errors(emu, raw):
    unknown = raw.session.post(f"{emu.instance_url}/__admin/nope", json={}, timeout=30)
    assert unknown.status_code == 404 and unknown.json()[0]["errorCode"] == "NOT_FOUND"
    bad = raw.session.post(f"{emu.instance_url}/__admin/delete", json={"wrong": 1}, timeout=30)
    assert bad.status_code == 400
    get_write = raw.session.get(f"{emu.instance_url}/__admin/expire_tokens", timeout=30)
    assert get_write.status_code == 405


def test_given_admin_calls_then_not_counted_and_need_no_token(emu, raw):
    before = emu.api_calls()
    calls = raw.session.get(f"{emu.instance_url}/__admin/api_calls", timeout=30).json()["result"]
    assert calls["limit"] == emu.org.config.daily_api_limit
    assert emu.api_calls() == before


def test_given_user_dml_when_created_via_admin_then_visible_to_api_with_no_api_origin(emu, sf, raw):
    seen = len(raw.admin("cdc_events"))
    rid = raw.admin("create", obj="Lead", values={"LastName": "Admin", "Company": "Adm Inc"})
    assert sf.Lead.get(rid)["LastName"] == "Admin"
    raw.admin("update", obj="Lead", id=rid, values={"Title": "Boss"})
    assert sf.Lead.get(rid)["Title"] == "Boss"
    events = raw.admin("cdc_events")[seen:]
    headers = [e["data"]["payload"]["ChangeEventHeader"] for e in events]
    assert [h["changeType"] for h in headers] == ["CREATE", "UPDATE"]
    assert all(h["changeOrigin"] == "" for h in headers)


def test_given_merge_via_admin_then_loser_deleted_with_master_record_id(sf, raw):
    master = raw.admin("create", obj="Account", values={"Name": "Master"})
    loser = raw.admin("create", obj="Account", values={"Name": "Loser"})
    raw.admin("merge", obj="Account", master_id=master, loser_ids=[loser])
    rows = sf.query_all(
        f"SELECT Id, IsDeleted, MasterRecordId FROM Account WHERE Id = '{loser}'", include_deleted=True
    )["records"]
    assert rows[0]["IsDeleted"] is True and rows[0]["MasterRecordId"] == master


def test_given_converted_lead_when_updated_via_api_then_cannot_update_converted_lead(sf, raw):
    lead = raw.admin("create", obj="Lead", values={"LastName": "Conv", "Company": "Conv Inc"})
    result = raw.admin("convert_lead", lead_id=lead)
    assert result["contactId"].startswith("003") and result["accountId"].startswith("001")
    converted = sf.Lead.get(lead)
    assert converted["IsConverted"] is True and converted["ConvertedContactId"] == result["contactId"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Lead.update(lead, {"Title": "x"})
    assert exc.value.content[0]["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"


def test_given_deleted_then_undeleted_via_admin_then_live_again(sf, raw):
    rid = raw.admin("create", obj="Campaign", values={"Name": "Undel"})
    raw.admin("delete", obj="Campaign", id=rid)
    assert sf.query(f"SELECT Id FROM Campaign WHERE Id = '{rid}'")["totalSize"] == 0
    raw.admin("undelete", obj="Campaign", id=rid)
    assert sf.query(f"SELECT Id FROM Campaign WHERE Id = '{rid}'")["totalSize"] == 1


def test_given_hidden_row_via_admin_then_api_cannot_see_it(sf, raw):
    rid = raw.admin("create", obj="Campaign", values={"Name": "Shared"})
    raw.admin("set_hidden", obj="Campaign", id=rid, hidden=True)
    assert sf.query(f"SELECT Id FROM Campaign WHERE Id = '{rid}'")["totalSize"] == 0
    raw.admin("set_hidden", obj="Campaign", id=rid, hidden=False)
    assert sf.query(f"SELECT Id FROM Campaign WHERE Id = '{rid}'")["totalSize"] == 1


def test_given_gap_and_overflow_injected_then_cdc_events_list_them(raw):
    seen = len(raw.admin("cdc_events"))
    raw.admin("inject_gap", obj="Lead", ids=["00Q000000000000AAA"], change_type="GAP_UPDATE")
    raw.admin("inject_overflow", obj="Contact")
    types = [e["data"]["payload"]["ChangeEventHeader"]["changeType"] for e in raw.admin("cdc_events")[seen:]]
    assert types == ["GAP_UPDATE", "GAP_OVERFLOW"]


def test_given_faults_and_tokens_via_http_admin_then_applied(emu, sf, raw):
    rule = raw.admin("add_fault", kind="http_500", family="limits", count=1)
    assert rule["kind"] == "http_500" and rule["id"] >= 1
    assert [r["id"] for r in raw.admin("faults")] == [rule["id"]]
    status = raw.get("/limits").status_code
    assert status == 500
    raw.admin("clear_faults")
    assert raw.admin("faults") == []
    token = emu.new_token()
    assert raw.admin("expire_tokens") >= 1
    assert (
        emu.session().get(f"{raw.base}/limits", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code
        == 401
    )


def test_given_request_log_and_counters_via_http_then_readable_and_resettable(emu, sf, raw):
    sf.query("SELECT Id FROM Account LIMIT 1")
    log = raw.admin("request_log", limit=1)
    assert log[0]["family"] == "query" and log[0]["status"] == 200
    raw.admin("reset_counters")
    assert raw.admin("api_calls")["used"] == 0
    sf.query("SELECT Id FROM Account LIMIT 1")
    assert raw.admin("api_calls", family="query")["total"] == 1


def test_given_system_update_via_admin_then_systemmodstamp_moves_but_lastmodified_does_not(emu, sf, raw):
    rid = raw.admin("create", obj="Campaign", values={"Name": "Sys"})
    before = sf.Campaign.get(rid)
    emu.clock.advance(5)
    raw.admin("system_update", obj="Campaign", id=rid, values={"Description": "by a flow"})
    after = sf.Campaign.get(rid)
    assert after["SystemModstamp"] > before["SystemModstamp"]
    assert after["LastModifiedDate"] == before["LastModifiedDate"]


def test_given_seed_via_http_admin_then_generated_records_become_queryable(sf, raw):
    before = sf.query("SELECT COUNT() FROM Contact")["totalSize"]
    counts = raw.admin("seed", seed=99, records=100)
    assert sum(counts.values()) == 100
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == before + counts["Contact"]


def test_given_archived_task_via_admin_then_only_query_all_returns_it(sf, raw):
    tid = raw.admin("create", obj="Task", values={"Subject": "Archive me"})
    raw.admin("archive", obj="Task", id=tid)
    q = f"SELECT Id, IsArchived FROM Task WHERE Id = '{tid}'"
    assert sf.query(q)["totalSize"] == 0
    assert sf.query_all(q, include_deleted=True)["records"][0]["IsArchived"] is True


def test_given_late_commit_via_admin_then_invisible_until_clock_reaches_it_with_past_stamp(emu, sf, raw):
    rid = raw.admin("late_commit", obj="Campaign", values={"Name": "Late"}, stamp_ago_s=120, visible_after_s=60)
    q = f"SELECT Id, SystemModstamp FROM Campaign WHERE Id = '{rid}'"
    assert sf.query(q)["totalSize"] == 0
    emu.clock.advance(61)
    rec = sf.query(q)["records"][0]
    stamp_age_s = (emu.clock.now_ms() - _ms(rec["SystemModstamp"])) / 1000
    assert 150 <= stamp_age_s <= 200


def test_given_hard_delete_and_empty_recycle_bin_via_admin_then_gone_from_query_all(sf, raw):
    hard = raw.admin("create", obj="Campaign", values={"Name": "Hard"})
    soft = raw.admin("create", obj="Campaign", values={"Name": "Soft"})
    raw.admin("hard_delete", obj="Campaign", id=hard)
    raw.admin("delete", obj="Campaign", id=soft)
    q = f"SELECT Id FROM Campaign WHERE Id IN ('{hard}', '{soft}')"
    assert [r["Id"] for r in sf.query_all(q, include_deleted=True)["records"]] == [soft]
    assert raw.admin("empty_recycle_bin", obj="Campaign") >= 1
    assert sf.query_all(q, include_deleted=True)["totalSize"] == 0


def test_given_mass_update_via_admin_then_every_record_changed(sf, raw):
    ids = [raw.admin("create", obj="Campaign", values={"Name": f"Mass {i}"}) for i in range(3)]
    raw.admin("mass_update", obj="Campaign", ids=ids, values={"Status": "Completed"})
    recs = sf.restful("composite/sobjects/Campaign", method="GET", params={"ids": ",".join(ids), "fields": "Status"})
    assert [r["Status"] for r in recs] == ["Completed"] * 3


# ------------------------------------------------------------------------------ hardening


def _admin_url(emu, op):
    return f"{emu.instance_url}/__admin/{op}"


def _refused(resp, needle):
    assert resp.status_code == 403, resp.text
    [body] = resp.json()
    assert body["errorCode"] == "FORBIDDEN" and needle in body["message"]


def test_given_a_non_json_body_when_admin_called_then_403_and_nothing_changes(emu, raw):
    before = raw.admin("clock_get")["now_ms"]
    raw.admin("clock_freeze")
    try:
        frozen = raw.admin("clock_get")["now_ms"]
        for headers, data in (
            ({"Content-Type": "text/plain"}, '{"seconds": 3600}'),  # what a cross-origin page can send unpreflighted
            ({"Content-Type": "application/x-www-form-urlencoded"}, "seconds=3600"),
            ({"Content-Type": "multipart/form-data; boundary=x"}, "--x--"),
            ({}, b'{"seconds": 3600}'),  # a body without a Content-Type
        ):
            resp = raw.session.post(_admin_url(emu, "clock_advance"), data=data, headers=headers, timeout=30)
            _refused(resp, "Content-Type: application/json")
        assert raw.admin("clock_get")["now_ms"] == frozen
    finally:
        raw.admin("clock_run")
    assert raw.admin("clock_get")["now_ms"] >= before


def test_given_a_foreign_origin_when_admin_called_then_403_even_with_json(emu, raw):
    before = len(raw.admin("faults"))
    for origin in ("https://evil.example.com", "null", "http://127.0.0.1:1"):
        resp = raw.session.post(
            _admin_url(emu, "add_fault"), json={"kind": "http_500"}, headers={"Origin": origin}, timeout=30
        )
        _refused(resp, "cross-origin")
        read = raw.session.get(_admin_url(emu, "request_log"), headers={"Origin": origin}, timeout=30)
        _refused(read, "cross-origin")
    assert len(raw.admin("faults")) == before


def test_given_the_emulators_own_origin_or_none_when_admin_called_with_json_from_loopback_then_accepted(emu, raw):
    own = raw.session.post(_admin_url(emu, "clock_get"), json={}, headers={"Origin": emu.instance_url}, timeout=30)
    assert own.status_code == 200 and "now_ms" in own.json()["result"]
    plain = raw.session.post(_admin_url(emu, "api_calls"), json={"family": "bulk"}, timeout=30)
    assert plain.status_code == 200
    no_body = raw.session.post(_admin_url(emu, "reset_counters"), timeout=30)
    assert no_body.status_code == 200


def test_given_a_rebound_host_name_when_admin_called_then_403(emu, raw):
    # DNS rebinding: a page of evil.example resolving to 127.0.0.1 reaches the emulator with its own Host
    resp = raw.session.get(_admin_url(emu, "request_log"), headers={"Host": "evil.example:443"}, timeout=30)
    _refused(resp, "loopback host")


def test_given_a_remote_address_when_admin_called_then_403():
    from sfsync_emulator.emulator import Emulator
    from werkzeug.test import Client

    with Emulator.start() as emu:
        client = Client(emu.app)
        remote = client.post("/__admin/clock_get", json={}, environ_base={"REMOTE_ADDR": "10.1.2.3"})
        assert remote.status_code == 403 and "loopback only" in remote.get_json()[0]["message"]
        local = client.post("/__admin/clock_get", json={}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
        assert local.status_code == 200
