"""A reference DDI server: small, in memory, faithful to hawkBit where a device can tell.

For tests, the bench and the demo; it binds to loopback only. What it does as
hawkBit does (see the DDI reference the project keeps):

* root poll with ``config.polling.sleep`` (HH:MM:SS, or as Java's
  ``Duration.toString()`` from one day on), ``_links`` to deploymentBase (``?c=``
  changes with the action), cancelAction, configData (for a new device and after
  every closed action); ETag and 304;
* deploymentBase with download/update skip|attempt|forced, maintenance window,
  several chunks and artifacts, each with sha1, md5 and sha256 and both
  ``download`` and ``download-http`` links; feedback recorded in order; 410,
  without a body, once closed;
* cancelAction and its feedback (closed+success cancels; rejected goes back to
  running; 405 when the action is not being cancelled);
* an action that does not exist, or is another device's: 404 with hawkBit's
  error body (``ExceptionInfo``); one in the wrong state for the resource: 404
  without a body;
* artifacts with ETag (``"<sha1>"``), Range, If-Range, 206 and 416;
* TargetToken authentication (401), and a switch that answers 429.

The management side is this module's Python API: ``create_deployment``,
``cancel``, ``set_window``, ``statuses``, ``attributes``, ``answer_429``.
``requests`` lists (method, path) of every request; with ``record=True``,
``exchanges`` keeps every request with its answer (``Exchange``), for tests that
check the wire against the OpenAPI document.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HAL_JSON = "application/hal+json"
OCTET_STREAM = "application/octet-stream"
ARTIFACT_PREFIX = 64         # bytes of an artifact body an Exchange keeps
NOT_FOUND = ("org.eclipse.hawkbit.repository.exception.EntityNotFoundException",
             "hawkbit.server.error.repo.entitiyNotFound")      # sic: hawkBit's spelling
NOT_CANCELABLE = ("org.eclipse.hawkbit.repository.exception.CancelActionNotAllowedException",
                  "hawkbit.server.error.action.notCancelable")
QUOTA = ("org.eclipse.hawkbit.repository.exception.QuotaExceededException",
         "hawkbit.server.error.quota.tooManyEntries")


@dataclass(frozen=True)
class Exchange:
    """One request and the answer to it, as they went over the wire."""

    at: float                          # time.monotonic() when the request had been read
    method: str
    path: str                          # path and query, as requested
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    response_headers: dict[str, str]   # as sent, Server and Date included
    response_body: bytes               # of an artifact, only the first ARTIFACT_PREFIX bytes
    response_length: int               # bytes of the whole response body


@dataclass
class Artifact:
    filename: str
    data: bytes

    @property
    def etag(self) -> str:
        """hawkBit's: the SHA-1 of the artifact, quoted."""
        return '"' + hashlib.sha1(self.data).hexdigest() + '"'


@dataclass
class Action:
    id: int
    device: str
    chunks: list[dict[str, Any]]                 # {"part", "name", "version", "artifacts": [Artifact]}
    download: str = "forced"
    update: str = "forced"
    window: str | None = None                    # None: no maintenance schedule
    state: str = "open"                          # open | canceling | closed
    statuses: list[dict[str, Any]] = field(default_factory=list)
    result: str | None = None                    # success | failure | canceled, once closed

    @property
    def c(self) -> int:
        """hawkBit's ``c=`` parameter: changes when what the device should do changes."""
        digest = hashlib.sha256(f"{self.id}:{self.download}:{self.update}:{self.window}".encode()).digest()
        return int.from_bytes(digest[:4], "big", signed=True)


RETRIEVED = {"execution": "retrieved"}   # the status a deploymentBase fetch records


class DdiServer:
    """``with DdiServer() as server:`` serves ``server.url``; tenant ``DEFAULT``."""

    def __init__(self, *, tenant: str = "DEFAULT", sleep: str = "00:05:00", tokens: dict[str, str] | None = None,
                 record: bool = False, tls: tuple[Path, Path] | None = None, public_url: str | None = None):
        """``tls``: a certificate and its key, to serve https. ``public_url``: the server's
        address as devices reach it (a board behind QEMU's user network, say), for the links
        it hands out; by default ``url``."""
        self.tenant = tenant
        self.sleep = sleep
        self.tokens = tokens or {}                   # controller id -> TargetToken; empty: no auth
        self.actions: dict[int, Action] = {}
        self.attributes: dict[str, dict[str, str]] = {}
        self.config_requested: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.record = record                         # keep every Exchange in ``exchanges``
        self.exchanges: list[Exchange] = []
        self.not_modified = 0                        # root polls answered 304
        self.answer_429 = False
        self.tls = tls
        self.public_url = public_url
        self.lock = threading.Lock()
        self._next_id = 1
        self._httpd: ThreadingHTTPServer | None = None

    # --- management API ------------------------------------------------------------

    def create_deployment(self, device: str, chunks: list[dict[str, Any]], *, download: str = "forced",
                          update: str = "forced", window: str | None = None) -> Action:
        """``chunks``: dicts with part, name, version and ``artifacts``: {filename: bytes}."""
        with self.lock:
            action = Action(self._next_id, device, [
                {**{k: v for k, v in c.items() if k != "artifacts"},
                 "artifacts": [Artifact(name, data) for name, data in c["artifacts"].items()]} for c in chunks],
                download=download, update=update, window=window)
            self.actions[action.id] = action
            self._next_id += 1
            return action

    def cancel(self, action_id: int) -> None:
        with self.lock:
            action = self.actions[action_id]
            if action.state == "open":
                action.state = "canceling"

    def set_window(self, action_id: int, window: str | None) -> None:
        with self.lock:
            self.actions[action_id].window = window

    def reopen(self, action_id: int) -> None:
        """Offer a closed action again, as a server gone wrong would."""
        with self.lock:
            action = self.actions[action_id]
            action.state, action.result = "open", None

    def statuses(self, action_id: int) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.actions[action_id].statuses)

    # --- running -------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._httpd.server_address[1]}"

    def handler_class(self) -> type["_Handler"]:
        """The request handler (hil/server/hostile.py has one that lies)."""
        return _Handler

    def controller_url(self, device: str) -> str:
        return f"{(self.public_url or self.url).rstrip('/')}/{self.tenant}/controller/v1/{device}"

    def __enter__(self) -> "DdiServer":
        handler = type("Handler", (self.handler_class(),), {"server_model": self})
        self._httpd = _Listener(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, name="ddi-server", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    # --- what the handler asks ------------------------------------------------------

    def open_action(self, device: str) -> Action | None:
        live = [a for a in self.actions.values() if a.device == device and a.state != "closed"]
        return live[0] if live else None

    def wire_sleep(self) -> str:
        """HH:MM:SS under a day; from a day on, as Java's ``Duration.toString()`` prints it (``PT26H``)."""
        hours, minutes, seconds = (int(x) for x in self.sleep.split(":"))
        if hours < 24:
            return self.sleep
        return f"PT{hours}H" + (f"{minutes}M" if minutes else "") + (f"{seconds}S" if seconds else "")

    def find_action(self, device: str, action_id: int) -> Action | dict[str, str]:
        """The device's action, or the ExceptionInfo hawkBit answers when there is none."""
        action = self.actions.get(action_id)
        if action is None:
            return _exception_info(NOT_FOUND, f"Action with given identifier {{{action_id}}} does not exist.")
        if action.device != device:
            return _exception_info(NOT_FOUND, f"Not a valid action ({action_id}) for target: {device}")
        return action


def _exception_info(kind: tuple[str, str], message: str) -> dict[str, str]:
    """hawkBit's error body (``ExceptionInfo``)."""
    return {"exceptionClass": kind[0], "errorCode": kind[1], "message": message}


_ROUTE = re.compile(r"^/(?P<tenant>[^/]+)/controller/v1/(?P<device>[^/]+)(?P<rest>/.*)?$")


class _Listener(ThreadingHTTPServer):
    # Python's default listen backlog of 5 makes a fleet's simultaneous connections wait for
    # TCP retries (1, 3, 7 s...): the bench would measure the test server, not the agents.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A device gone in the middle of an answer (its power cut, say) is no error of the server."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_model: DdiServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK (up to 40 ms). hawkBit buffers its answers: no such delay there.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:   # quiet: tests read the model instead
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def setup(self) -> None:
        super().setup()
        self._sent_headers: dict[str, str] = {}

    def send_header(self, keyword: str, value: str) -> None:
        """Sends, and keeps what was sent for the Exchange."""
        super().send_header(keyword, value)
        self._sent_headers[keyword] = value

    # --- routing --------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        model = self.server_model
        self._sent_headers = {}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        at = time.monotonic()
        model.requests.append((method, self.path))
        self._dispatch(method, raw)
        if model.record:
            exchange = Exchange(at, method, self.path, dict(self.headers.items()), raw, self._status,
                                dict(self._sent_headers), self._kept, self._length)
            with model.lock:      # in arrival order: a later request may finish first
                bisect.insort(model.exchanges, exchange, key=lambda e: e.at)

    def _dispatch(self, method: str, raw: bytes) -> None:
        model = self.server_model
        match = _ROUTE.match(urlsplit(self.path).path)
        if not match or match["tenant"] != model.tenant:
            return self._send(404, {"message": "not found"})
        device, rest = match["device"], match["rest"] or ""
        token = model.tokens.get(device)
        if token is not None and self.headers.get("Authorization") != f"TargetToken {token}":
            return self._send(401, {"message": "authentication failed"})
        if model.answer_429:
            return self._send(429, _exception_info(QUOTA, "Too many entries have been inserted."),
                              headers={"Retry-After": "1"})
        body = _json(raw) if method in ("POST", "PUT") else None
        with model.lock:
            if method == "GET" and rest == "":
                return self._root(device)
            if method == "PUT" and rest == "/configData":
                model.attributes.setdefault(device, {}).update(body.get("data", {}))
                model.config_requested.discard(device)
                return self._send(200, None)
            if found := re.fullmatch(r"/deploymentBase/(\d+)", rest):
                return self._deployment(device, int(found[1])) if method == "GET" else self._send(405, None)
            if found := re.fullmatch(r"/(deploymentBase|cancelAction)/(\d+)/feedback", rest):
                return self._feedback(device, found[1], int(found[2]), body) if method == "POST" \
                    else self._send(405, None)
            if found := re.fullmatch(r"/cancelAction/(\d+)", rest):
                return self._cancel(device, int(found[1]))
            if found := re.fullmatch(r"/softwaremodules/(\d+)/artifacts/([^/]+)", rest):
                return self._artifact(int(found[1]), found[2])
        return self._send(404, {"message": "not found"})

    # --- resources ----------------------------------------------------------------------

    def _root(self, device: str) -> None:
        model = self.server_model
        if device not in model.attributes:
            model.attributes[device] = {}
            model.config_requested.add(device)
        base = model.controller_url(device)
        links: dict[str, Any] = {}
        action = model.open_action(device)
        if action is not None:
            name = "cancelAction" if action.state == "canceling" else "deploymentBase"
            suffix = "" if name == "cancelAction" else f"?c={action.c}"
            links[name] = {"href": f"{base}/{name}/{action.id}{suffix}"}
        if device in model.config_requested:
            links["configData"] = {"href": f"{base}/configData"}
        body: dict[str, Any] = {"config": {"polling": {"sleep": model.wire_sleep()}}}
        if links:
            body["_links"] = links
        etag = '"' + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32] + '"'
        if self.headers.get("If-None-Match") == etag:
            model.not_modified += 1
            return self._send(304, None, headers={"ETag": etag})
        self._send(200, body, headers={"ETag": etag})

    def _deployment(self, device: str, action_id: int) -> None:
        """As hawkBit: 404 while the action is being (or was) cancelled; a finished one is still shown."""
        model = self.server_model
        action = model.find_action(device, action_id)
        if not isinstance(action, Action):
            return self._send(404, action)
        if action.state == "canceling" or action.result == "canceled":
            return self._send(404, None)
        if action.state == "open" and (not action.statuses or action.statuses[-1] != RETRIEVED):
            action.statuses.append(dict(RETRIEVED))     # as hawkBit: not twice in a row
        base = model.controller_url(device)
        deployment: dict[str, Any] = {"download": action.download,
                                      "update": "skip" if action.window == "unavailable" else action.update,
                                      "chunks": []}
        if action.window is not None:
            deployment["maintenanceWindow"] = action.window
        for module, chunk in enumerate(action.chunks, 1):
            artifacts = []
            for a in chunk["artifacts"]:
                # Both rels, as a hawkBit whose download protocols follow the request's scheme
                # ({protocolRequest}): this server speaks plain HTTP, so both links are http.
                href = {"href": f"{base}/softwaremodules/{action.id * 100 + module}/artifacts/{a.filename}"}
                artifacts.append({"filename": a.filename, "size": len(a.data),
                                  "hashes": {"sha1": hashlib.sha1(a.data).hexdigest(),
                                             "md5": hashlib.md5(a.data).hexdigest(),
                                             "sha256": hashlib.sha256(a.data).hexdigest()},
                                  "_links": {"download": href, "download-http": href}})
            deployment["chunks"].append({**{k: v for k, v in chunk.items() if k != "artifacts"},
                                         "artifacts": artifacts})
        self._send(200, {"id": str(action.id), "deployment": deployment})

    def _feedback(self, device: str, kind: str, action_id: int, body: Any) -> None:
        action = self.server_model.find_action(device, action_id)
        if not isinstance(action, Action):
            return self._send(404, action)
        cancelled = action.state == "canceling" or action.result == "canceled"
        if kind == "cancelAction" and not cancelled:
            return self._send(405, _exception_info(NOT_CANCELABLE, "The action is not in canceling state."))
        if kind == "deploymentBase" and action.state == "closed":
            return self._send(410, None)
        status = body.get("status", {}) if isinstance(body, dict) else {}
        execution, finished = status.get("execution"), status.get("result", {}).get("finished")
        action.statuses.append({"kind": kind, **status})
        if kind == "cancelAction" and action.state == "canceling":
            if execution == "closed" and finished in ("success", "none"):
                action.state, action.result = "closed", "canceled"
            elif execution == "rejected" or finished == "failure":
                action.state = "open"
        elif kind == "deploymentBase" and execution == "closed":
            action.state, action.result = "closed", "success" if finished in ("success", "none") else "failure"
            self.server_model.config_requested.add(device)
        self._send(200, None)

    def _cancel(self, device: str, action_id: int) -> None:
        action = self.server_model.find_action(device, action_id)
        if not isinstance(action, Action):
            return self._send(404, action)
        if action.state != "canceling" and action.result != "canceled":
            return self._send(404, None)
        self._send(200, {"id": str(action.id), "cancelAction": {"stopId": str(action.id)}})

    def _artifact(self, module: int, filename: str) -> None:
        action = self.server_model.actions.get(module // 100)
        index = module % 100 - 1
        if action is None or not 0 <= index < len(action.chunks):
            return self._send(404, _exception_info(NOT_FOUND, f"SoftwareModule with given identifier {{{module}}} "
                                                              "does not exist."))
        found = [a for a in action.chunks[index]["artifacts"] if a.filename == filename]
        if not found:
            return self._send(404, None)
        artifact = found[0]
        data, headers, status = artifact.data, {"ETag": artifact.etag, "Accept-Ranges": "bytes"}, 200
        wanted = self.headers.get("Range")
        if wanted and self.headers.get("If-Range") in (None, artifact.etag):
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted)
            start = int(match[1]) if match else len(data)
            end = int(match[2]) if match and match[2] else len(data) - 1
            if start >= len(data):
                return self._send(416, None, headers={"Content-Range": f"bytes */{len(data)}"})
            status, data = 206, data[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{len(artifact.data)}"
        self._send_bytes(status, data, OCTET_STREAM, headers)

    # --- plumbing -------------------------------------------------------------------------

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """JSON: a resource as HAL, an error as plain JSON (``ExceptionInfo``); None: no body, no Content-Type."""
        if body is None:
            return self._send_bytes(status, b"", None, headers or {})
        self._send_bytes(status, json.dumps(body).encode(), HAL_JSON if status < 400 else "application/json",
                         headers or {})

    def _send_bytes(self, status: int, data: bytes, content_type: str | None, headers: dict[str, str]) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self._status, self._length = status, len(data)
        self._kept = data[:ARTIFACT_PREFIX] if content_type == OCTET_STREAM else data


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}

