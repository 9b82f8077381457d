"""The operator's decisions on actions (``fwagent approve``, ``fwagent defer``): one JSON file in
the state directory, kept as agent/state_file.py keeps a record, read and written here only.

The command line writes it; the daemon reads it at each look at a gate (every couple of seconds
while an action waits for approval). The latest decision on an action replaces an earlier one;
the file keeps the latest MAX_KEPT actions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.errors import FwagentError
from agent.policy.gates import Choice
from agent.state_file import StateFile

FILENAME = "policy-decisions.json"
SCHEMA = 1
MAX_KEPT = 16
DECISIONS = ("approve", "approve-reboot", "defer")


class DecisionFileError(FwagentError, ValueError):
    code = "decision-file"


def _problem(record: Any) -> str | None:
    if not isinstance(record, dict) or record.get("schema") != SCHEMA or not isinstance(record.get("actions"), dict):
        return f"not a decision record of schema {SCHEMA}"
    for action, entry in record["actions"].items():
        if not isinstance(entry, dict) or entry.get("decision") not in DECISIONS or not (
                entry.get("until") is None or isinstance(entry["until"], (int, float))):
            return f"the decision on action {action!r} is not one this agent reads"
    return None


class DecisionFile:
    def __init__(self, state_dir: Path) -> None:
        self.file = StateFile(Path(state_dir) / FILENAME, "decision record", check=_problem,
                              empty=lambda: {"schema": SCHEMA, "actions": {}},
                              damaged=lambda path, found: DecisionFileError(f"{path}: {found}"),
                              failed=DecisionFileError)

    def choice(self, action: str) -> Choice | None:
        entry = self.file.load()["actions"].get(action)
        return Choice(action, entry["decision"], entry.get("until")) if entry else None

    def decide(self, choice: Choice) -> None:
        record = self.file.load()
        actions = {a: e for a, e in record["actions"].items() if a != choice.action}
        actions[choice.action] = {"decision": choice.decision, "until": choice.until}
        record["actions"] = dict(list(actions.items())[-MAX_KEPT:])
        self.file.save(record)
