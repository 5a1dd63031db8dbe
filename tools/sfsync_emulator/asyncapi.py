"""HTTP face of Bulk API 1.0 (``/services/async/<ver>/job...``): routes, XML/JSON bodies, errors.

Requests authenticate with ``X-SFDC-Session: <token>`` (``Authorization: Bearer`` is accepted
too) and count as API calls of the ``bulk`` family, so limits and fault rules apply as for
Bulk 2.0.  Answers are JSON when the request's ``Content-Type`` (or ``Accept``) is JSON or, for
requests naming a job, when the job's ``contentType`` is JSON; XML otherwise, in the
``http://www.force.com/2009/06/asyncapi/dataload`` namespace.  Every error -- this API's own
(``InvalidJob``, ``InvalidBatch``, ...) and the pipeline's (an invalid session, the request
limit, an injected fault, an unknown URL) -- answers Bulk 1.0's error body::

    <error xmlns="..."><exceptionCode>InvalidSessionId</exceptionCode>
    <exceptionMessage>Invalid session id</exceptionMessage></error>
    {"exceptionCode": "InvalidSessionId", "exceptionMessage": "Invalid session id"}

with HTTP 400 for an invalid session (as real orgs answer Bulk 1.0 calls, not 401).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Request, Response

from .bulk1 import BulkV1Service, Instant, ResultList, async_error
from .errors import ApiError
from .schema import format_csv_datetime, format_rest_datetime
from .server import Call, Route

if TYPE_CHECKING:
    from .server import EmulatorApp

NS = "http://www.force.com/2009/06/asyncapi/dataload"
XML_CT = "application/xml;charset=UTF-8"
JSON_CT = "application/json;charset=UTF-8"
XML_MIMES = frozenset({"application/xml", "text/xml"})
PREFIX = "/services/async/"
#: Bulk 1.0's own exceptionCodes (rendered as they are)
ASYNC_CODES = frozenset(
    {
        "ClientInputError", "ExceededQuota", "FeatureNotEnabled", "InvalidBatch", "InvalidJob", "InvalidJobState",
        "InvalidOperation", "InvalidSessionId", "InvalidUrl", "InvalidUser", "InvalidXML", "Timeout",
        "TooManyLockFailure", "Unknown",
    }
)  # fmt: skip
#: pipeline errors (REST codes) -> (status, exceptionCode, message or None to keep the REST one)
FROM_REST: dict[str, tuple[int, str, str | None]] = {
    "INVALID_SESSION_ID": (400, "InvalidSessionId", "Invalid session id"),
    "REQUEST_LIMIT_EXCEEDED": (403, "ExceededQuota", None),
    "NOT_FOUND": (404, "InvalidUrl", None),
    "METHOD_NOT_ALLOWED": (405, "InvalidUrl", None),
    "QUERY_TIMEOUT": (400, "Timeout", None),
    "UNKNOWN_EXCEPTION": (500, "Unknown", None),
    "SERVER_UNAVAILABLE": (503, "Unknown", None),
}
_JOB_IN_PATH = re.compile(r"^/services/async/[^/]+/job/([A-Za-z0-9]+)")


class AsyncVersionConverter(BaseConverter):
    """``59.0`` in a Bulk 1.0 path (no ``v``)."""

    regex = r"\d{1,3}\.\d"


class AsyncApi:
    """The Bulk API 1.0 routes over :class:`~sfsync_emulator.bulk1.BulkV1Service`."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app

    @property
    def service(self) -> BulkV1Service:
        return self.app.bulk1

    def routes(self) -> list[Route]:
        j = "/services/async/<asyncver:version>/job"
        b = f"{j}/<job_id>/batch/<batch_id>"
        g = ("GET",)
        return [
            Route(j, ("POST",), "bulk", self.create_job, api="async"),
            Route(f"{j}/<job_id>", ("GET", "POST"), "bulk", self.job, api="async"),
            Route(f"{j}/<job_id>/batch", ("GET", "POST"), "bulk", self.batches, api="async"),
            Route(b, g, "bulk", self.batch, api="async"),
            Route(f"{b}/request", g, "bulk", self.batch_request, api="async"),
            Route(f"{b}/result", g, "bulk", self.batch_result, api="async"),
            Route(f"{b}/result/<result_id>", g, "bulk", self.query_result, api="async"),
        ]

    # -- handlers ----------------------------------------------------------------------------

    def create_job(self, call: Call) -> Response:
        info = self.service.create_job(
            _job_body(call.request),
            call.version,
            pk_chunking_header=call.request.headers.get("Sforce-Enable-PKChunking"),
            client=call.origin,
        )
        return self._info(call, "jobInfo", info, status=201, job_type=str(info["contentType"]))

    def job(self, call: Call) -> Response:
        job_id = str(call.args["job_id"])
        if call.request.method == "GET":
            info = self.service.get_job(job_id, call.version)
        else:
            info = self.service.update_job(job_id, _job_body(call.request), call.version)
        return self._info(call, "jobInfo", info, job_type=str(info["contentType"]))

    def batches(self, call: Call) -> Response:
        job_id = str(call.args["job_id"])
        job_type = self.service.job_content_type(job_id)
        if call.request.method == "POST":
            info = self.service.add_batch(
                job_id, call.version, call.request.get_data(), call.request.headers.get("Content-Type", "")
            )
            return self._info(call, "batchInfo", info, status=201, job_type=job_type)
        infos = self.service.list_batches(job_id, call.version)
        if _wants_json(call.request, job_type):
            return _json({"batchInfo": [_json_values(i) for i in infos]})
        inner = "".join(_xml_element("batchInfo", i) for i in infos)
        return _xml(f'<batchInfoList xmlns="{NS}">{inner}</batchInfoList>')

    def batch(self, call: Call) -> Response:
        job_id = str(call.args["job_id"])
        info = self.service.get_batch(job_id, str(call.args["batch_id"]), call.version)
        return self._info(call, "batchInfo", info, job_type=self.service.job_content_type(job_id))

    def batch_request(self, call: Call) -> Response:
        data, mime = self.service.batch_request(str(call.args["job_id"]), str(call.args["batch_id"]), call.version)
        return Response(data, status=200, content_type=f"{mime}; charset=UTF-8")

    def batch_result(self, call: Call) -> Response:
        job_id = str(call.args["job_id"])
        result = self.service.batch_result(job_id, str(call.args["batch_id"]), call.version)
        if isinstance(result, ResultList):
            if _wants_json(call.request, self.service.job_content_type(job_id)):
                return _json(result.ids)
            inner = "".join(f"<result>{escape(i)}</result>" for i in result.ids)
            return _xml(f'<result-list xmlns="{NS}">{inner}</result-list>')
        return Response(result.body, status=200, content_type=result.content_type)

    def query_result(self, call: Call) -> Response:
        gzip = "gzip" in call.request.headers.get("Accept-Encoding", "").lower()
        result = self.service.query_result(
            str(call.args["job_id"]), str(call.args["batch_id"]), str(call.args["result_id"]), call.version, gzip=gzip
        )
        resp = Response(result.body, status=200, direct_passthrough=True, content_type=result.content_type)
        for key, value in result.headers.items():
            resp.headers[key] = value
        return resp

    # -- rendering -----------------------------------------------------------------------------

    def _info(
        self, call: Call, element: str, info: Mapping[str, Any], *, status: int = 200, job_type: str | None
    ) -> Response:
        if _wants_json(call.request, job_type):
            return _json(_json_values(info), status)
        return _xml(_xml_element(element, info, namespace=True), status)

    def error_response(self, err: ApiError, request: Request) -> Response:
        """Any error of a ``/services/async/`` request in Bulk 1.0's shape (see module doc)."""
        status, code, message = async_shape(err)
        match = _JOB_IN_PATH.match(request.path)
        job_type = self.service.job_content_type(match.group(1)) if match else None
        if _wants_json(request, job_type):
            return _json({"exceptionCode": code, "exceptionMessage": message}, status)
        body = (
            f'<error xmlns="{NS}"><exceptionCode>{escape(code)}</exceptionCode>'
            f"<exceptionMessage>{escape(message)}</exceptionMessage></error>"
        )
        return _xml(body, status)


def is_async_path(path: str) -> bool:
    return path.startswith(PREFIX)


def async_shape(err: ApiError) -> tuple[int, str, str]:
    """(HTTP status, exceptionCode, exceptionMessage) of an error raised for a Bulk 1.0 request."""
    if err.error_code in ASYNC_CODES:
        return err.status, err.error_code, err.message
    mapped = FROM_REST.get(err.error_code)
    if mapped is not None:
        status, code, message = mapped
        return status, code, message or err.message
    code = "ClientInputError" if err.status < 500 else "Unknown"
    return err.status, code, f"{err.error_code}: {err.message}"


def _wants_json(request: Request, job_type: str | None) -> bool:
    mime = request.mimetype
    if mime == "application/json":
        return True
    if mime in XML_MIMES:
        return False
    accept = request.headers.get("Accept", "").lower()
    if "application/json" in accept and "xml" not in accept:
        return True
    if "xml" in accept and "json" not in accept:
        return False
    return job_type == "JSON"


def _job_body(request: Request) -> dict[str, Any]:
    """A JobInfo request body, XML or JSON by its Content-Type."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise async_error("ClientInputError", "The request body is empty: send a jobInfo (XML or JSON)")
    mime = request.mimetype
    if mime == "application/json":
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise async_error("ClientInputError", f"Failed to parse the jobInfo JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise async_error("ClientInputError", "The jobInfo JSON must be an object")
        return body
    if mime in XML_MIMES:
        return _xml_job(raw)
    raise async_error(
        "ClientInputError",
        f"Unsupported Content-Type {request.content_type or '(none)'}: send application/xml or application/json",
    )


def _xml_job(raw: bytes) -> dict[str, Any]:
    if b"<!DOCTYPE" in raw.upper() or b"<!ENTITY" in raw.upper():
        raise async_error("InvalidXML", "A jobInfo must not carry a DOCTYPE or entity declarations")
    try:
        root = ET.fromstring(raw)  # noqa: S314 - no DTD can reach the parser (refused above): no entity expansion
    except ET.ParseError as exc:
        raise async_error("InvalidXML", f"Failed to parse the jobInfo XML: {exc}") from exc
    if _local(root.tag) != "jobInfo":
        raise async_error("InvalidXML", f"The root element must be jobInfo, not {_local(root.tag)}")
    out: dict[str, Any] = {}
    for child in root:
        name = _local(child.tag)
        if len(child) or name in out:
            raise async_error("InvalidXML", f"Unexpected element in jobInfo: {name}")
        out[name] = (child.text or "").strip()
    return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _json_values(info: Mapping[str, Any]) -> dict[str, Any]:
    return {k: format_rest_datetime(v) if isinstance(v, Instant) else v for k, v in info.items()}


def _xml_text(value: Any) -> str:
    if isinstance(value, Instant):
        return format_csv_datetime(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _xml_element(name: str, info: Mapping[str, Any], *, namespace: bool = False) -> str:
    inner = "".join(f"<{k}>{_xml_text(v)}</{k}>" for k, v in info.items() if v is not None)
    ns = f' xmlns="{NS}"' if namespace else ""
    return f"<{name}{ns}>{inner}</{name}>"


def _xml(body: str, status: int = 200) -> Response:
    return Response(f'<?xml version="1.0" encoding="UTF-8"?>{body}', status=status, content_type=XML_CT)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status, content_type=JSON_CT)
