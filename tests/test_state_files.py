"""The state directory is the agent's alone: directories 0700, files 0600."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.daemon.record import ActionRecord
from agent.daemon.store import ActionStore
from agent.download.sinks import FileSink
from agent.errors import FwagentError, UsageError
from agent.state_file import StateFile
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
    ActionStore(tmp_path / "state").save(ActionRecord())
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


# --- the record file both the journal and the server action are kept in (agent/state_file.py) ---

class Damaged(FwagentError):
    code = "damaged"

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


class Failed(FwagentError):
    code = "failed"


def record_file(path: Path) -> StateFile:
    return StateFile(path, "test record", check=lambda r: None if isinstance(r, dict) and r.get("v") == 1 else
                     "v is not 1", empty=lambda: {"v": 1, "empty": True}, damaged=Damaged, failed=Failed)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "not a test record (Expecting value at 0)"),
    (b'{"v": 1', "not a test record (Expecting ',' delimiter at 7)"),
    (b"\xff\xfe\x00", "not a test record (not UTF-8 text)"),
    (b'{"v": 2}', "v is not 1"),
    (b"[1]", "v is not 1"),
])
def test_a_record_that_is_not_one_is_named_and_never_reset(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "state/record.json"
    path.parent.mkdir()
    path.write_bytes(data)
    with pytest.raises(Damaged) as err:
        record_file(path).load()
    assert err.value.detail == f"{path}: {message}"
    assert path.read_bytes() == data


def test_a_record_round_trips_privately_and_a_missing_one_is_empty(tmp_path: Path) -> None:
    records = record_file(tmp_path / "state/record.json")
    assert records.load() == {"v": 1, "empty": True} and records.read() is None
    records.save({"v": 1, "n": [1, 2]})
    assert records.load() == {"v": 1, "n": [1, 2]}
    assert mode(tmp_path / "state") == 0o700 and mode(tmp_path / "state/record.json") == 0o600
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["record.json"]        # no temp file left


def test_a_record_that_cannot_be_written_fails_with_the_owners_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the directory should be")
    with pytest.raises(Failed, match=r"state/record.json: cannot write: "):
        record_file(tmp_path / "state/record.json").save({"v": 1})


def test_another_process_holding_the_lock_is_refused_at_once(tmp_path: Path) -> None:
    records = record_file(tmp_path / "state/record.json")
    (tmp_path / "state").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / 'state/the.lock')!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(30)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match="someone else has it") as err:
            with records.exclusive("the.lock", "someone else has it"):
                pass
        assert err.value.code == "busy"
    finally:
        holder.kill()
        holder.wait(timeout=10)
    with records.exclusive("the.lock", "someone else has it"):
        assert mode(tmp_path / "state/the.lock") == 0o600
