"""Deliver the journal's final outcomes to the DDI server.

An outcome leaves the outbox only once the server has taken it (2xx), or says
the action is already closed (410): a crash between sending and removing
sends it again, and the server's 410 makes that harmless, so each result is
recorded on the server exactly once. A transient failure stops the delivery;
what is left waits in the journal for the next try (as after a refusal or a
quota answer). A 404 means the action no longer exists. Outcomes of updates that
no DDI action asked for stay in the outbox for other reporters.

An update the server cancelled (code ``cancelled``) is answered on the
cancelAction resource, closed + success: the cancel took effect.
"""

from __future__ import annotations

from typing import Any

from agent.ddi.client import DdiClient, DdiError
from agent.ddi.codec import feedback
from agent.journal import Journal

GONE = ("ddi-gone", "ddi-http-404")
# status.code of a closed action: 0 committed, 1 failed with nothing activated, 2 rolled back
STATUS_CODES = {"failed": 1, "rolled-back": 2}     # the action is closed, or no longer exists: nothing to tell


def outcome_feedback(outcome: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Where to send the final word, and the body: closed + success or failure, with the details."""
    if outcome.get("code") == "cancelled":
        return "cancelAction", feedback("closed", "success", details=["fwagent: cancelled before the switch; "
                                                                      "nothing was activated"])
    details = [f"fwagent: update {outcome['state']}"
               + (f", version {outcome['version']}" if outcome.get("version") else "")]
    if outcome.get("code"):
        details.append(f"{outcome['code']}: {outcome.get('reason', '')}")
    success = outcome["result"] == "success"
    return "deploymentBase", feedback("closed", "success" if success else "failure", details=details,
                                      code=0 if success else STATUS_CODES.get(outcome["state"], 1))


def deliver(journal: Journal, client: DdiClient) -> int:
    """Send the outbox's DDI outcomes, oldest first; returns how many left the outbox."""
    delivered = 0
    with journal.locked():
        record = journal.load()
        for outcome in list(record["outbox"]):
            action = (outcome.get("origin") or {}).get("ddi_action")
            if action is None:
                continue
            try:
                kind, body = outcome_feedback(outcome)
                client.send_feedback(kind, str(action), body)
            except DdiError as err:
                if err.code not in GONE:
                    break               # unreachable, refused or over quota: keep it and the rest for later
            record["outbox"].remove(outcome)
            journal.save(record)        # one durable write per delivered outcome
            delivered += 1
    return delivered



def enqueue(journal: Journal, outcome: dict[str, Any]) -> None:
    """Add a final outcome that no install recorded (an action that failed before it began)."""
    with journal.locked():
        record = journal.load()
        record["outbox"].append(outcome)
        journal.save(record)
