"""hawkBit's DDI OpenAPI document as a validator of HTTP exchanges (openapi-core).

``check_request`` and ``check_response`` take what went over the wire (a method,
a URL or path with its query, headers, body bytes) and raise AssertionError
naming the operation and every violation. The document is the one kept in
tests/vectors/ddi/ (see its PROVENANCE.md), loaded once, with the corrections
``amended`` lists: each is a place where the document contradicts what hawkBit
does (the reference is shared/reference/hawkbit-ddi.md; section numbers below
are its), never a place where this project's server or client would be let off.

Stricter than the document in one respect: an object may carry only the
properties its schema names. hawkBit ignores unknown fields, so a misspelt
optional field in a device's feedback would be lost without a word; this makes
it an error instead.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.deserializing.media_types.util import json_loads
from openapi_core.templating.paths import APICallPathFinder
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.response.exceptions import MissingData

DOCUMENT = Path(__file__).parent / "vectors/ddi/hawkbit-ddi-openapi.json"
BASE = "/{tenant}/controller/v1/{controllerId}"
HOST = "http://device.invalid"          # any host: the amended document matches paths only

_EXCEPTION_INFO = {"$ref": "#/components/schemas/ExceptionInfo"}


def amended(document: dict[str, Any]) -> dict[str, Any]:
    """The document with its defects corrected; each says what is wrong and what hawkBit does."""
    spec = copy.deepcopy(document)
    paths = spec["paths"]

    # springdoc wrote down the address of the machine that generated the document
    # (http://localhost:53002). A device talks to its own server: match the path only,
    # whose /{tenant}/controller/v1/{controllerId} prefix every path template carries.
    spec["servers"] = [{"url": "/"}]

    # DdiPolling.sleep has the notation's description as its `pattern`: as a regular
    # expression "HH:MM:SS" matches only that literal text, so every real answer would
    # fail. hawkBit sends HH:mm:ss under a day and Java's Duration.toString() from one
    # day on, which always has hours (PT26H, PT36H30M) (2.5).
    spec["components"]["schemas"]["DdiPolling"]["properties"]["sleep"]["pattern"] = (
        r"^(([01]\d|2[0-3]):[0-5]\d:[0-5]\d|PT\d+H(\d+M)?(\d+S)?)$")

    # The root resource answers If-None-Match with 304 and no body (Spring's
    # ShallowEtagHeaderFilter, 2.7); the document does not list it.
    paths[BASE]["get"]["responses"]["304"] = {
        "description": "Not modified", "headers": {"ETag": _header(r'^".+"$')}}

    # The artifact download: springdoc rendered the Java return type (a stream) as
    # `*/*` with a JSON object schema; the answer is the file's bytes as
    # application/octet-stream, with ETag "<sha1>" (2.1, 2.7). Range requests get
    # 206 with Content-Range, or 416 with "bytes */<length>" (2.8.8); the document has
    # neither.
    download = paths[f"{BASE}/softwaremodules/{{softwareModuleId}}/artifacts/{{fileName}}"]["get"]["responses"]
    octets = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    etag = _header(r'^"[0-9a-f]{40}"$')
    download["200"] = {"description": "The artifact", "content": octets, "headers": {"ETag": etag}}
    download["206"] = {"description": "A range of the artifact", "content": octets,
                       "headers": {"ETag": etag, "Content-Range": _header(r"^bytes \d+-\d+/\d+$")}}
    download["416"] = {"description": "Range not satisfiable",
                       "headers": {"Content-Range": _header(r"^bytes \*/\d+$")}}

    # hawkBit answers 404 on these too: an action that does not exist or is another
    # target's (EntityNotFoundException), and one in the wrong state for the resource
    # (2.1, 2.8.2, 2.8.4). The document leaves 404 out of all three.
    for path, method in ((f"{BASE}/deploymentBase/{{actionId}}", "get"), (f"{BASE}/cancelAction/{{actionId}}", "get"),
                         (f"{BASE}/cancelAction/{{actionId}}/feedback", "post")):
        paths[path][method]["responses"]["404"] = {"description": "No such action",
                                                   "content": {"application/json": {}}}

    # The document gives 404, 405 and 429 a JSON body without a schema, so any JSON
    # passes. hawkBit's exception handler writes ExceptionInfo for the exceptions
    # behind them: entity not found, cancel not allowed, quota exceeded (2.1).
    for operations in paths.values():
        for operation in operations.values():
            for status in ("404", "405", "429"):
                media = operation["responses"].get(status, {}).get("content", {}).get("application/json")
                if media == {}:
                    media["schema"] = _EXCEPTION_INFO
    return spec


def _header(pattern: str) -> dict[str, Any]:
    return {"required": True, "schema": {"type": "string", "pattern": pattern}}


API = OpenAPI.from_dict(amended(json.loads(DOCUMENT.read_text())), config=Config(
    extra_media_type_deserializers={"application/hal+json": json_loads},   # HAL is JSON
    additional_properties_default_policy="forbid"))


def _operation(method: str, url: str) -> Any:
    """The document's operation for a request; AssertionError when it has none."""
    try:
        return APICallPathFinder(API.spec).find(method.lower(), HOST + urlsplit(url).path).operation
    except PathError as error:
        raise AssertionError(f"{method} {url}: {_describe(error)}") from None


def check_request(method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> str:
    """Validate a request a device sent (``url``: whole, or path and query); returns its operationId."""
    operation = _operation(method, url)["operationId"]
    errors = list(API.iter_request_errors(_request(method, url, headers, body)))
    if errors:
        raise AssertionError(f"{method} {url} ({operation}) request: " + "; ".join(map(_describe, errors)))
    return operation


def check_response(method: str, url: str, status: int, headers: Mapping[str, str], body: bytes) -> str:
    """Validate the server's answer to a request; returns the request's operationId.

    hawkBit builds some 404 and 410 answers without a body (ResponseEntity.notFound()
    for an action in the wrong state for the resource, GONE for feedback on a closed
    action: 2.8.2 to 2.8.4) where the document declares a JSON body for both. So a
    404 or 410 with no body and no Content-Type is checked for all but its body.
    """
    operation = _operation(method, url)
    content_type = _get(headers, "Content-Type")
    response = MockResponse(body, status, headers=dict(headers), content_type=content_type)
    errors = list(API.iter_response_errors(_request(method, url, {}, None), response))
    if status in (404, 410) and not body and not content_type:
        errors = [e for e in errors if not isinstance(e, MissingData)]
    if body and not errors and "content" not in operation / "responses" / str(status):
        errors.append(ValueError(f"{len(body)} bytes of body where the document declares none"))
    if errors:
        raise AssertionError(f"{method} {url} ({operation['operationId']}) -> {status}: "
                             + "; ".join(map(_describe, errors)))
    return operation["operationId"]


def _request(method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> MockRequest:
    parts = urlsplit(url)
    return MockRequest(HOST, method, parts.path, args=dict(parse_qsl(parts.query)), headers=dict(headers),
                       data=body or None, content_type=_get(headers, "Content-Type"))


def _get(headers: Mapping[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), "")


def _describe(error: BaseException) -> str:
    """The error; when a schema is what failed, each violation with where it is (header, parameter, body path)."""
    chain = [error]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    violations = [e for cause in chain for e in getattr(cause, "schema_errors", None) or ()]
    if violations:
        named = next((cause.name for cause in chain if isinstance(getattr(cause, "name", None), str)), None)
        return "; ".join(f"{named or '.'.join(map(str, v.absolute_path)) or 'body'}: {v.message}"
                         for v in violations)
    text = ""
    for cause in chain:
        if (said := str(cause) or type(cause).__name__) not in text:
            text += (": " if text else "") + said
    return text


def check_exchanges(server: Any) -> set[tuple[str, int]]:
    """Every recorded exchange, request and answer, against the document: (operationId, status) seen."""
    seen = set()
    for exchange in server.exchanges:
        operation = check_request(exchange.method, exchange.path, exchange.request_headers, exchange.request_body)
        check_response(exchange.method, exchange.path, exchange.status, exchange.response_headers,
                       exchange.response_body)
        seen.add((operation, exchange.status))
    return seen
