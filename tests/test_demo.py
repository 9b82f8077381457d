"""The README's first command works and shows the whole job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main


def test_demo_runs_the_main_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "payload rootfs.img: 4194304 bytes, SHA-256 matches the manifest" in out
    assert "rejected: bundle-digest-mismatch: payload rootfs.img" in out
    assert "outcome: success (committed); booted slot now: B, version 1.1.0" in out
    slot_b = (tmp_path / "device/rootfs-b.img").read_bytes()
    assert slot_b[:4 << 20] == (tmp_path / "rootfs.img").read_bytes()
    journal = json.loads((tmp_path / "device/state/journal.json").read_text())
    assert journal["update"] is None and journal["installed"]["sequence"] == 2
    assert [o["result"] for o in journal["outbox"]] == ["success"]
