"""The update in flight, typed: what the journal's ``update`` holds (pure: no I/O).

One reader (``from_dict``, on a record agent/journal_check.py has accepted) and one writer
(``as_dict``, the table agent/journal.py saves). The JSON field names are those devices in
the field have written since the first journal: never rename one. A field a record lacks
stays absent when it is written back, one it holds as null stays null, and a field this
agent does not know is kept as it was: every record ever written loads, and is written back
with the same fields and the same meaning.

The installer (agent/install/installer.py) changes the record in place as the update goes on
(each state, each download checkpoint, each Thing's result) and saves it with the journal's
record at every step; the nested tables (``things``, ``downloads``, ``stream``, ``delta``) are
the JSON tables themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from agent.update.flow import State


@dataclass
class UpdateRecord:
    id: str                                     # the update's own id (uuid4 hex)
    state: State                                # the step persisted last (its stable name on disk)
    source: str                                 # the bundle: a path or a URL
    restarts: int = 0                           # starts of the agent within this update (not reboots it waited for)
    started: float | None = None                # when it began (epoch seconds)
    no_reboot: bool | None = None               # the reboot is left to someone else
    origin: dict[str, Any] | None = None        # who asked for it (a DDI action), for the outcome
    links: dict[str, str] | None = None         # a manifest's "#name" payloads -> the URLs they come from
    stage: bool | None = None                   # stop after the write, in staged, until released
    released: bool | None = None                # a staged update may switch now
    # From verify on: the manifest and where it goes.
    manifest: str | None = None                 # the signed manifest, base64 (checked again at each use)
    target: str | None = None                   # the slot written: A or B
    previous: str | None = None                 # the booted slot, the fallback
    sequence: int | None = None                 # the manifest's anti-rollback counter
    digest: str | None = None                   # the manifest's SHA-256, hex
    version: str | None = None                  # the version it installs, if it says
    things_only: bool | None = None             # it updates Things only: the slots stay as they are
    things: dict[str, dict[str, Any]] | None = None     # Thing name -> result, size, digest, tried, ...
    # From the switch on: the boot it happened in.
    boot_id: str | None = None
    # Where the write stands, for a restart.
    downloads: dict[str, dict[str, Any]] | None = None  # slot label -> the downloader's Resume
    stream: dict[str, Any] | None = None        # a streamed bundle's StreamProgress
    delta: dict[str, dict[str, Any]] | None = None      # slot label -> what its delta fetched
    # Why it failed, once it did.
    reason: str | None = None
    code: str | None = None
    # Kept from the record as read: the optional fields it held as null, and the fields this
    # agent does not know. Written back as they were.
    nulls: frozenset[str] = field(default=frozenset(), repr=False)
    unknown: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, update: dict[str, Any]) -> UpdateRecord:
        """The update of a journal record as agent/journal_check.py accepts it."""
        known = {name: update[name] for name in _OPTIONAL if update.get(name) is not None}
        return cls(id=update["id"], state=State(update["state"]), source=update["source"],
                   restarts=update["restarts"], **known,
                   nulls=frozenset(name for name in _OPTIONAL if name in update and update[name] is None),
                   unknown={k: v for k, v in update.items() if k not in _FIELDS})

    @classmethod
    def of(cls, record: dict[str, Any]) -> UpdateRecord | None:
        """The update in flight of a journal record (checked as it was loaded), or None."""
        return None if record["update"] is None else cls.from_dict(record["update"])

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: id, state, source and restarts always; the rest when set (or held as null)."""
        optional = {name: getattr(self, name) for name in _OPTIONAL}
        return {**self.unknown, "id": self.id, "state": self.state.value, "source": self.source,
                "restarts": self.restarts,
                **{k: v for k, v in optional.items() if v is not None or k in self.nulls}}

    def fail(self, code: str, reason: str) -> None:
        """Why it fails (or rolls back): kept for its outcome."""
        self.code, self.reason = code, reason


_REQUIRED = ("id", "state", "source", "restarts")
_OPTIONAL = tuple(f.name for f in fields(UpdateRecord) if f.name not in (*_REQUIRED, "nulls", "unknown"))
_FIELDS = frozenset(_REQUIRED + _OPTIONAL)
