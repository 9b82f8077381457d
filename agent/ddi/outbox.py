"""Deliver the journal's final outcomes to the DDI server.

An outcome leaves the outbox only once the server has taken it (2xx), or says
the action is already closed (410): a crash between sending and removing
sends it again, and the server's 410 makes that harmless, so each result is
recorded on the server exactly once. A transient failure stops the delivery;
what is left waits in the journal for the next try (as after a refusal or a
quota answer). A 404 means the action no longer exists. Outcomes of updates that
no DDI action asked for stay in the outbox for other reporters.
"""

from __future__ import annotations

from typing import Any

from agent.ddi.client import DdiClient, DdiError
from agent.ddi.codec import feedback
from agent.journal import Journal

GONE = ("ddi-gone", "ddi-http-404")     # the action is closed, or no longer exists: nothing to tell


def outcome_feedback(outcome: dict[str, Any]) -> dict[str, Any]:
    """closed + success or failure, with what happened in the details."""
    details = [f"fwagent: update {outcome['state']}"
               + (f", version {outcome['version']}" if outcome.get("version") else "")]
    if outcome.get("code"):
        details.append(f"{outcome['code']}: {outcome.get('reason', '')}")
    return feedback("closed", "success" if outcome["result"] == "success" else "failure", details=details)


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
                client.send_feedback("deploymentBase", str(action), outcome_feedback(outcome))
            except DdiError as err:
                if err.code not in GONE:
                    break               # unreachable, refused or over quota: keep it and the rest for later
            record["outbox"].remove(outcome)
            journal.save(record)        # one durable write per delivered outcome
            delivered += 1
    return delivered
