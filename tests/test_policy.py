"""[policy]: install windows (parsing, evaluation across midnight and the week's end), what an
approval command's exit code means, and the section's validation. Pure: no clock, no daemon."""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path

import pytest
from test_config import GOOD, write

from agent.config import load_config
from agent.errors import ConfigError
from agent.policy.approval import DEFAULT_WAIT, GO, REFUSE, WAIT, Verdict, run_approval, verdict
from agent.policy.windows import is_open, next_opening, opening_text, parse_windows

# 2026-12-07 is a Monday.
MON = datetime(2026, 12, 7)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return MON.replace(day=7 + day, hour=hour, minute=minute)


@pytest.mark.parametrize("value, message", [
    ("Mon-Fri 2-4", r'\[policy\].install_windows\[0\]: "Mon-Fri 2-4": expected HH:MM-HH:MM'),
    ("Mon-Fri", r"expected DAYS HH:MM-HH:MM"),
    ("Mon-Fry 02:00-04:00", r"'Mon-Fry' is not a day or a range of days"),
    ("Mon 25:00-26:00", r"25:00 is not a time of day"),
    ("Mon 02:60-03:00", r"02:60 is not a time of day"),
    ("Mon 24:00-02:00", r"cannot open at 24:00"),
    ("Mon-Tue-Wed 02:00-03:00", r"is not a day or a range of days"),
])
def test_a_bad_window_is_one_line_naming_it(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace('"', "'")) as caught:
        parse_windows([value])
    assert "\n" not in str(caught.value)


def test_a_window_names_its_index() -> None:
    with pytest.raises(ConfigError, match=r"install_windows\[1\]"):
        parse_windows(["Mon 02:00-03:00", "Tue 2-3"])
    with pytest.raises(ConfigError, match=r"install_windows\[0\] must be a string"):
        parse_windows([3])


def test_no_windows_is_always_open() -> None:
    assert is_open((), at(0, 12)) and next_opening((), at(0, 12)) is None


def test_weekday_window() -> None:
    windows = parse_windows(["Mon-Fri 02:00-04:00"])
    assert is_open(windows, at(0, 2)) and is_open(windows, at(4, 3, 59))
    assert not is_open(windows, at(0, 4)) and not is_open(windows, at(5, 3))     # 04:00 is out; Saturday too
    assert next_opening(windows, at(0, 12)) == at(1, 2)
    assert next_opening(windows, at(4, 5)) == at(7, 2)                           # Friday -> next Monday


def test_a_window_crossing_midnight_and_the_weeks_end() -> None:
    windows = parse_windows(["Sun 22:00-02:00"])
    assert is_open(windows, at(6, 23)) and is_open(windows, at(0, 1, 59))        # Sunday night into Monday
    assert not is_open(windows, at(0, 2)) and not is_open(windows, at(6, 21, 59))
    assert next_opening(windows, at(0, 3)) == at(6, 22)


def test_whole_days_and_wrapping_day_ranges() -> None:
    windows = parse_windows(["Sat,Sun 00:00-24:00", "Fri-Mon 12:00-13:00"])
    assert is_open(windows, at(5, 0)) and is_open(windows, at(6, 23, 59))
    assert is_open(windows, at(0, 12, 30)) and is_open(windows, at(4, 12))
    assert not is_open(windows, at(1, 12, 30))
    assert next_opening(windows, at(1, 12, 30)) == at(4, 12)


def test_opening_text() -> None:
    assert opening_text(at(1, 2), at(0, 12)) == "02:00"
    assert opening_text(at(5, 0), at(0, 12)) == "Sat 00:00"


@pytest.mark.parametrize("status, output, decision, reason, wait", [
    (0, b"", GO, "", 0),
    (21, b"", WAIT, "may-update asks to wait", DEFAULT_WAIT),
    (21, b"30\n", WAIT, "may-update asks to wait", 30),
    (21, b"999999999", WAIT, "may-update asks to wait", 86400),
    (21, b"0", WAIT, "may-update asks to wait", 1),
    (21, b"soon", WAIT, "may-update asks to wait", DEFAULT_WAIT),
    (21, b"nan", WAIT, "may-update asks to wait", DEFAULT_WAIT),
    (1, b"battery low\nmore\n", REFUSE, "battery low", 0),
    (2, b"", REFUSE, "may-update refused: exit status 2", 0),
    (-9, b"", REFUSE, "may-update refused: killed by signal 9", 0),
    (1, b"x" * 10000, REFUSE, "x" * 200, 0),
])
def test_an_approval_exit_code_is_go_wait_or_refuse(status: int, output: bytes, decision: str, reason: str,
                                                    wait: float) -> None:
    assert verdict("may-update", status, output) == Verdict(decision, reason, wait)


def test_an_approval_command_learns_its_gate_and_has_a_timeout(tmp_path: Path) -> None:
    script = "import os, sys; print(os.environ['FWAGENT_GATE'], os.environ['FWAGENT_ACTION']); sys.exit(3)"
    result = run_approval((sys.executable, "-c", script), "install", "12", "2.0.0")
    assert result.decision == REFUSE and result.reason == "install 12"
    slow = run_approval((sys.executable, "-c", "import time; time.sleep(30)"), "install", "12", None, timeout=0.5)
    assert slow.decision == REFUSE and "no answer within" in slow.reason
    missing = run_approval((str(tmp_path / "nothing"),), "install", "12", None)
    assert missing.decision == REFUSE and "cannot run" in missing.reason


def test_the_policy_section_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD + '[policy]\napprove = [["/usr/lib/app/may-update", "-q"]]\n'
                               'install_windows = ["Mon-Fri 02:00-04:00"]\nwhen = "online"\n'))
    assert config.policy.approve == (("/usr/lib/app/may-update", "-q"),) and not config.policy.manual
    assert len(config.policy.install_windows) == 1 and config.policy.when == "online"
    manual = load_config(write(tmp_path, GOOD + '[policy]\napprove = "manual"\nreboot = "approve"\n')).policy
    assert manual.manual and manual.reboot == "approve" and manual.retries == 1
    assert load_config(write(tmp_path, GOOD + '[policy]\nretries = 5\nretry_delay = 2\n')).policy.retries == 5
    assert load_config(write(tmp_path, GOOD)).policy.approve == ()


@pytest.mark.parametrize("text, message", [
    ('approve = "maybe"', r'\[policy\].approve must be "manual" or a list of commands'),
    ('approve = [[]]', r"\[policy\].approve must be a list of commands"),
    ('approve = ["/bin/true"]', r"\[policy\].approve must be a list of commands"),
    ('install_windows = ["Mon-Fri 2-4"]', r'\[policy\].install_windows\[0\]: .Mon-Fri 2-4.: expected HH:MM-HH:MM'),
    ('install_windows = "Mon 02:00-03:00"', r"\[policy\].install_windows must be list"),
    ('when = "later"', r'\[policy\].when must be "now" or "online"'),
    ('retry = 2', r"\[policy\].retry is not a known key"),
    ('retries = 0', r"\[policy\].retries must be from 1 to 5 \(1: no retry\), got 0"),
    ('retries = 6', r"\[policy\].retries must be from 1 to 5"),
    ('retries = 2.5', r"\[policy\].retries must be int"),
    ('retry_delay = 0', r"\[policy\].retry_delay must be a number from 1 to 3600"),
    ('reboot = "later"', r'\[policy\].reboot must be "immediate", "window" or "approve"'),
    ('reboot = "window"', r'\[policy\].reboot = "window" needs \[policy\].install_windows'),
    ('reboot = "approve"', r'\[policy\].reboot = "approve" needs \[policy\].approve'),
])
def test_policy_mistakes_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(write(tmp_path, GOOD + f"[policy]\n{text}\n"))
    assert "\n" not in str(caught.value) and re.search(message, str(caught.value))


@pytest.mark.parametrize("text, seconds", [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("1d", 86400)])
def test_a_defer_duration(text: str, seconds: float) -> None:
    from agent.cli.policy import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, message", [("", "expected a duration"), ("2 hours", "expected a duration"),
                                           ("0s", "from 1 s to 30 days"), ("31d", "from 1 s to 30 days")])
def test_a_bad_defer_duration_is_a_usage_error(text: str, message: str) -> None:
    from agent.cli.policy import parse_duration
    from agent.errors import UsageError

    with pytest.raises(UsageError, match=message):
        parse_duration(text)


def test_approve_and_defer_write_the_decision_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main
    from agent.policy.decisions import DecisionFile

    config = write(tmp_path, GOOD)
    assert main(["approve", "--config", str(config)]) == 2           # nothing in hand, no action named
    assert "error: usage: no server action is in hand" in capsys.readouterr().err
    assert main(["defer", "12", "--for", "1h", "--config", str(config), "--json"]) == 0
    assert '"decision": "defer"' in capsys.readouterr().out
    decisions = DecisionFile(load_config(config).device.state_dir)
    assert decisions.choice("12").decision == "defer" and decisions.choice("13") is None
    assert main(["approve", "12", "--config", str(config)]) == 0     # replaces the defer
    assert decisions.choice("12").decision == "approve" and decisions.choice("12").until is None
