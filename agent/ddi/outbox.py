"""Deliver the journal's final outcomes to the DDI server.

An outcome leaves the outbox only once the server has taken it (2xx), or says
the action is already closed (410): a crash between sending and removing
sends it again, and the server's 410 makes that harmless, so each result is
recorded on the server exactly once. A transient failure stops the delivery;
what is left waits in the journal for the next try (as after refused
credentials or a quota answer). A 404 means the action no longer exists. Outcomes of updates that
no DDI action asked for stay in the outbox for other reporters.

An update the server cancelled (code ``cancelled``) is answered on the
cancelAction resource, closed + success: the cancel took effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.ddi.client import DdiClient, DdiError
from agent.ddi.codec import feedback
from agent.delta.report import summary
from agent.journal import Journal

GONE = ("ddi-gone", "ddi-http-404")   # the action is closed, or no longer exists: nothing to tell

# status.code of a closed action: 0 committed, 1 failed with nothing activated, 2 rolled back,
# 3 the gateway committed but a Thing not updated
STATUS_CODES = {"failed": 1, "rolled-back": 2, "committed": 3}


def outcome_feedback(outcome: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Where to send the final word, and the body: closed + success or failure, with the details."""
    if outcome.get("code") == "cancelled":
        return "cancelAction", feedback("closed", "success", details=["fwagent: cancelled before the switch; "
                                                                      "nothing was activated"])
    what = "already installed" if outcome["state"] == "already-installed" else f"update {outcome['state']}"
    details = [f"fwagent: {what}" + (f", version {outcome['version']}" if outcome.get("version") else "")]
    if outcome.get("code"):
        details.append(f"{outcome['code']}: {outcome.get('reason', '')}")
    for name, thing in (outcome.get("things") or {}).items():     # one line per Thing: what became of it
        why = " ".join(thing[key] for key in ("code", "reason") if thing.get(key))
        details.append(f"Thing {name}: {thing['result']}" + (f": {why}" if why else ""))
    for label, stats in (outcome.get("delta") or {}).items():     # bytes fetched against the full image
        details.append(f"{label}: {summary(stats)}")
    success = outcome["result"] == "success"
    return "deploymentBase", feedback("closed", "success" if success else "failure", details=details,
                                      code=0 if success else STATUS_CODES.get(outcome["state"], 1))


def deliver(journal: Journal, client: DdiClient,
            on_refused: Callable[[dict[str, Any], DdiError], None] = lambda _o, _e: None,
            hold: Callable[[str], bool] = lambda _action: False,
            on_delivered: Callable[[dict[str, Any]], None] = lambda _o: None) -> int:
    """Send the outbox's DDI outcomes, oldest first; returns how many left the outbox.

    Nothing is locked while a request is on its way (each may take the client's
    timeout): an outcome is read, sent, then removed by its id under the journal's lock.
    An outcome the server refuses for good (a 4xx other than 401/403/404/410/429),
    or whose action id is none (a journal of an earlier version), can never be
    delivered: it is handed to ``on_refused`` (the daemon logs it as an error) and
    removed, so that it does not hold back every outcome after it. ``hold``: actions
    whose step reports still wait to be sent; their outcome waits for them. ``on_delivered``
    hears of each outcome the server has, once it left the outbox (the daemon logs it)."""
    delivered = 0
    for outcome in list(journal.load()["outbox"]):
        action = (outcome.get("origin") or {}).get("ddi_action")
        if action is None or hold(str(action)):
            continue
        refused = None
        try:
            kind, body = outcome_feedback(outcome)
            client.send_feedback(kind, str(action), body)
        except DdiError as err:
            if err.code not in GONE:
                if not refused_for_good(err):
                    break           # unreachable, TLS, refused credentials, over quota: keep it for later
                refused = err       # 400, 405, 422...: it would block the rest forever
        if refused is not None:
            on_refused(outcome, refused)
        _forget(journal, outcome["id"])
        if refused is None:
            on_delivered(outcome)   # (a 410 too: the server closed the action with it before a restart)
        delivered += 1
    return delivered


def _forget(journal: Journal, outcome_id: str) -> None:
    with journal.locked():
        record = journal.load()
        record["outbox"] = [o for o in record["outbox"] if o.get("id") != outcome_id]
        journal.save(record)       # one durable write per delivered outcome


def withdraw(journal: Journal, outcome_id: str) -> bool:
    """Take an outcome back (its install runs again); False when it is no longer there (sent)."""
    with journal.locked():
        record = journal.load()
        kept = [o for o in record["outbox"] if o.get("id") != outcome_id]
        if len(kept) == len(record["outbox"]):
            return False
        record["outbox"] = kept
        journal.save(record)
        return True


def refused_for_good(error: DdiError) -> bool:
    """A report no retry can deliver: a 4xx that is no passing state, or an action id that is none."""
    return error.code == "ddi-action-id" or (
        error.status is not None and 400 <= error.status < 500 and error.status not in (401, 403, 408, 429))


def enqueue(journal: Journal, outcome: dict[str, Any]) -> None:
    """Add a final outcome that no install recorded (an action that failed before it began)."""
    with journal.locked():
        record = journal.load()
        record["outbox"].append(outcome)
        journal.save(record)
