"""The state directory is the agent's alone: directories 0700, files 0600."""

from __future__ import annotations

import stat
from pathlib import Path

from agent.daemon.store import ActionStore
from agent.download.sinks import FileSink
from install_bench import make_gateway


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_install_keeps_its_state_private(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path)
    state = tmp_path / "state"
    state.mkdir(mode=0o755)                        # as an earlier version made it
    state.chmod(0o755)
    assert gateway.installer().install(str(gateway.bundle("u2", sequence=2))).result == "success"
    assert mode(state) == 0o700
    assert {p.name: mode(p) for p in state.iterdir()} == {"journal.json": 0o600, "lock": 0o600,
                                                          "simulated-boot-id": 0o600}


def test_a_new_state_directory_is_private(tmp_path: Path) -> None:
    ActionStore(tmp_path / "state").save({"schema": 1, "phase": "idle", "action": None})
    assert mode(tmp_path / "state") == 0o700 and mode(tmp_path / "state/ddi-action.json") == 0o600


def test_downloads_are_written_to_files_only_the_agent_reads(tmp_path: Path) -> None:
    with FileSink(tmp_path / "new.fwb") as sink:
        sink.write(b"data")
    old = tmp_path / "old.fwb"                     # left 0644 by an earlier version, resumed now
    old.write_bytes(b"part")
    old.chmod(0o644)
    with FileSink(old):
        pass
    assert (mode(tmp_path / "new.fwb"), mode(old)) == (0o600, 0o600)
