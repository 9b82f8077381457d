"""hawkBit DDI v1 messages, read and written (pure: JSON values in, values out).

What the server sends is checked field by field and every error names the
field (``deployment.chunks[1].artifacts[0].size``): a device must never act on
half-understood instructions. What the device sends is built here only, so
that every feedback body has the shape and the enumerations of the server's
OpenAPI document.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from agent.errors import FwagentError

HANDLING = ("skip", "attempt", "forced")
WINDOW = ("available", "unavailable")
EXECUTION = ("closed", "proceeding", "canceled", "scheduled", "rejected", "resumed", "downloaded", "download")
FINISHED = ("success", "failure", "none")
CONFIG_MODES = ("merge", "replace", "remove")
DOWNLOAD_LINKS = ("download", "download-http")      # https first when both are offered
MAX_ATTRIBUTE = 128                                 # characters, keys and values (server limit)
MAX_DEPTH = 32                                      # nesting of a JSON answer (hawkBit's need 6)
MAX_NAME = 255                                      # characters of an artifact's file name

# An action id goes into URLs and reports, never into a path. hawkBit's and goosebit's are
# integers; anything beyond this conservative set is refused (and so are "." and "..").
ACTION_ID = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._-]{1,64}")

_HMS = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d)$")
_ISO = re.compile(r"^P(?:(\d{1,6})D)?(?:T(?:(\d{1,8})H)?(?:(\d{1,9})M)?(?:(\d{1,10}(?:\.\d{1,9})?)S)?)?$")


class DdiFormatError(FwagentError, ValueError):
    """The server sent something this client cannot read; the detail names the field."""

    code = "ddi-format"


@dataclass(frozen=True)
class RootPoll:
    sleep: float | None                    # seconds the server suggests, None when it gives none
    deployment: str | None = None          # href of deploymentBase
    cancel: str | None = None              # href of cancelAction
    config_data: str | None = None         # the server asks for attributes
    installed: str | None = None
    confirmation: str | None = None


@dataclass(frozen=True)
class Artifact:
    filename: str
    size: int
    hashes: dict[str, str]
    url: str | None                        # the download link to use, https preferred


@dataclass(frozen=True)
class Chunk:
    part: str
    name: str
    version: str
    artifacts: tuple[Artifact, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    encrypted: bool = False


@dataclass(frozen=True)
class Deployment:
    action_id: str
    download: str                          # skip | attempt | forced
    update: str
    maintenance_window: str | None         # available | unavailable | None (no schedule)
    chunks: tuple[Chunk, ...]

    @property
    def may_install(self) -> bool:
        """Install now? Not when the update is to be skipped or the window is closed."""
        return self.update != "skip" and self.maintenance_window != "unavailable"


@dataclass(frozen=True)
class Cancel:
    action_id: str
    stop_id: str


def load_json(data: bytes, where: str) -> Any:
    """An answer's JSON, nested at most MAX_DEPTH deep: anything else is a DdiFormatError."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise DdiFormatError(f"{where}: the answer is nested deeper than {MAX_DEPTH} levels",
                             code="ddi-too-deep") from None
    except ValueError:      # UnicodeDecodeError, JSONDecodeError, an integer of too many digits
        raise DdiFormatError(f"{where}: the answer is not JSON") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise DdiFormatError(f"{where}: the answer is nested deeper than {MAX_DEPTH} levels",
                                     code="ddi-too-deep")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value


def action_id_of(href: str) -> str | None:
    """The action id a deploymentBase or cancelAction link ends with, when it is a valid one."""
    last = urlsplit(href).path.rstrip("/").rpartition("/")[2]
    return last if ACTION_ID.fullmatch(last) else None


def parse_sleep(text: Any) -> float:
    """``HH:MM:SS`` (hours may pass 23) or an ISO-8601 duration such as ``PT26H``, in seconds."""
    if not isinstance(text, str):
        raise DdiFormatError(f"config.polling.sleep must be a string, got {type(text).__name__}")
    hms = _HMS.match(text)
    if hms:
        hours, minutes, seconds = map(int, hms.groups())
        return float(hours * 3600 + minutes * 60 + seconds)
    iso = _ISO.match(text)
    if iso and text not in ("P", "PT") and not text.endswith("T"):
        days, hours, minutes, seconds = iso.groups()
        return (int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60
                + float(seconds or 0))
    raise DdiFormatError(f"config.polling.sleep {text!r} is neither HH:MM:SS nor an ISO-8601 duration")


def parse_root(body: Any) -> RootPoll:
    root = _object(body, "root")
    sleep = None
    config = root.get("config")
    if config is not None:
        polling = _object(config, "config").get("polling")
        if polling is not None and "sleep" in _object(polling, "config.polling"):
            sleep = parse_sleep(polling["sleep"])
    links = _links(root.get("_links"), "_links")
    return RootPoll(sleep=sleep, deployment=links.get("deploymentBase"), cancel=links.get("cancelAction"),
                    config_data=links.get("configData"), installed=links.get("installedBase"),
                    confirmation=links.get("confirmationBase"))


def parse_deployment(body: Any) -> Deployment:
    base = _object(body, "deploymentBase")
    action_id = _action_id(base, "id", "deploymentBase")
    deployment = _object(base.get("deployment"), "deployment")
    download = _choice(deployment, "download", HANDLING, "deployment", default="forced")
    update = _choice(deployment, "update", HANDLING, "deployment", default="forced")
    window = _choice(deployment, "maintenanceWindow", WINDOW, "deployment", default=None)
    chunks = deployment.get("chunks")
    if not isinstance(chunks, list):
        raise DdiFormatError("deployment.chunks must be a list")
    return Deployment(action_id=action_id, download=download, update=update, maintenance_window=window,
                      chunks=tuple(_chunk(c, f"deployment.chunks[{i}]") for i, c in enumerate(chunks)))


def parse_cancel(body: Any) -> Cancel:
    cancel = _object(body, "cancelAction")
    action_id = _action_id(cancel, "id", "cancelAction")
    stop = _object(cancel.get("cancelAction"), "cancelAction.cancelAction")
    return Cancel(action_id=action_id, stop_id=_action_id(stop, "stopId", "cancelAction.cancelAction"))


def feedback(execution: str, finished: str = "none", *, details: list[str] | None = None,
             progress: tuple[int, int | None] | None = None, code: int | None = None,
             timestamp_ms: int | None = None) -> dict[str, Any]:
    """A DdiActionFeedback body (deploymentBase and cancelAction feedback alike)."""
    if execution not in EXECUTION:
        raise ValueError(f"execution {execution!r} is not one of {', '.join(EXECUTION)}")
    if finished not in FINISHED:
        raise ValueError(f"finished {finished!r} is not one of {', '.join(FINISHED)}")
    result: dict[str, Any] = {"finished": finished}
    if progress is not None:
        done, total = progress
        result["progress"] = {"cnt": done} if total is None else {"cnt": done, "of": total}
    status: dict[str, Any] = {"execution": execution, "result": result}
    if code is not None:
        status["code"] = code
    if details:
        status["details"] = [str(d) for d in details]
    body: dict[str, Any] = {"status": status}
    if timestamp_ms is not None:
        body["timestamp"] = timestamp_ms
    return body


def config_data(attributes: dict[str, str], mode: str = "merge") -> dict[str, Any]:
    """A DdiConfigData body; the server refuses keys or values over 128 characters."""
    if mode not in CONFIG_MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(CONFIG_MODES)}")
    if not attributes:
        raise ValueError("configData needs at least one attribute")
    data = {}
    for key, value in attributes.items():
        key, value = str(key), str(value)
        if not key or len(key) > MAX_ATTRIBUTE or len(value) > MAX_ATTRIBUTE:
            raise ValueError(f"attribute {key[:40]!r}: keys and values must be 1 to {MAX_ATTRIBUTE} characters")
        data[key] = value
    return {"mode": mode, "data": data}


# --- reading helpers -------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DdiFormatError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _string(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise DdiFormatError(f"{where}.{key} must be a non-empty string")
    return value


def _action_id(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)        # the OpenAPI document says string; an integer is as good
    if not isinstance(value, str) or not ACTION_ID.fullmatch(value):
        shown = repr(value)[:80] if isinstance(value, str) else type(value).__name__
        raise DdiFormatError(f"{where}.{key} {shown} is not an action id (1 to 64 of A-Z a-z 0-9 . _ -)",
                             code="ddi-action-id")
    return value


def _choice(obj: dict[str, Any], key: str, allowed: tuple[str, ...], where: str, default: Any) -> Any:
    if key not in obj:
        return default
    value = obj[key]
    if value not in allowed:
        raise DdiFormatError(f"{where}.{key} is {value!r}, not one of {', '.join(allowed)}")
    return value


def _links(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    links = {}
    for name, link in _object(value, where).items():
        href = _object(link, f"{where}.{name}").get("href")
        if not isinstance(href, str) or not href:
            raise DdiFormatError(f"{where}.{name}.href must be a non-empty string")
        links[name] = href
    return links


def _chunk(value: Any, where: str) -> Chunk:
    chunk = _object(value, where)
    artifacts = chunk.get("artifacts", [])
    if not isinstance(artifacts, list):
        raise DdiFormatError(f"{where}.artifacts must be a list")
    metadata: dict[str, str] = {}
    entries = chunk.get("metadata") or []
    if not isinstance(entries, list):
        raise DdiFormatError(f"{where}.metadata must be a list")
    for i, entry in enumerate(entries):
        item = _object(entry, f"{where}.metadata[{i}]")
        metadata[_string(item, "key", f"{where}.metadata[{i}]")] = str(item.get("value", ""))
    encrypted = chunk.get("encrypted", False)
    if not isinstance(encrypted, bool):
        raise DdiFormatError(f"{where}.encrypted must be true or false")
    return Chunk(part=_string(chunk, "part", where), name=_string(chunk, "name", where),
                 version=_string(chunk, "version", where),
                 artifacts=tuple(_artifact(a, f"{where}.artifacts[{i}]") for i, a in enumerate(artifacts)),
                 metadata=metadata, encrypted=encrypted)


def _artifact(value: Any, where: str) -> Artifact:
    artifact = _object(value, where)
    size = artifact.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise DdiFormatError(f"{where}.size must be a non-negative integer")
    hashes = {}
    for name, digest in _object(artifact.get("hashes", {}), f"{where}.hashes").items():
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]+", digest):
            raise DdiFormatError(f"{where}.hashes.{name} must be hexadecimal")
        hashes[name] = digest.lower()
    links = _links(artifact.get("_links"), f"{where}._links")
    url = next((links[name] for name in DOWNLOAD_LINKS if name in links), None)
    filename = _string(artifact, "filename", where)
    if len(filename) > MAX_NAME or not filename.isprintable() or "/" in filename or filename in (".", ".."):
        raise DdiFormatError(f"{where}.filename {filename[:80]!r} is not a plain file name of up to {MAX_NAME} "
                             "printable characters", code="ddi-artifact-name")
    return Artifact(filename=filename, size=size, hashes=hashes, url=url)
