"""The daemon's pure parts, without threads: the action table, deployment plans, poll delays, logs, jobs."""

from __future__ import annotations

import io
import random
import re
import threading
from pathlib import Path

import pytest

from agent.daemon.actions import (
    MAX_STARTS,
    RESUME,
    TRANSITIONS,
    ActionFlowError,
    Event,
    Phase,
    forced,
    starts_after,
    step,
)
from agent.daemon.jobs import JobWorker
from agent.daemon.plan import (
    ActionPlan,
    PlanError,
    check_payloads,
    plan_action,
    strongest_hash,
)
from agent.ddi.client import DdiError, PollPolicy, poll_after_error
from agent.ddi.codec import Artifact, Chunk, Deployment
from agent.log import Log, format_line
from agent.net.policy import LinkPolicy

ROOT = Path(__file__).resolve().parent.parent

# --- the action table ----------------------------------------------------------------------


def test_persisted_phase_names_never_change() -> None:
    assert [p.value for p in Phase] == ["idle", "wait-approval", "download", "wait-window", "install", "wait-reboot",
                                           "cancel"]


@pytest.mark.parametrize(("phase", "event", "expected"), [
    (Phase.IDLE, Event.DEPLOYMENT, Phase.DOWNLOAD),
    (Phase.IDLE, Event.HELD, Phase.APPROVAL),
    (Phase.APPROVAL, Event.APPROVED, Phase.DOWNLOAD),
    (Phase.APPROVAL, Event.CANCEL, Phase.CANCEL),
    (Phase.APPROVAL, Event.FAILED, Phase.IDLE),
    (Phase.APPROVAL, Event.WITHDRAWN, Phase.IDLE),
    (Phase.DOWNLOAD, Event.DOWNLOADED, Phase.WAIT),
    (Phase.DOWNLOAD, Event.FAILED, Phase.IDLE),
    (Phase.DOWNLOAD, Event.CANCEL, Phase.CANCEL),
    (Phase.DOWNLOAD, Event.WITHDRAWN, Phase.IDLE),
    (Phase.WAIT, Event.WINDOW_OPEN, Phase.INSTALL),
    (Phase.WAIT, Event.CANCEL, Phase.CANCEL),
    (Phase.WAIT, Event.WITHDRAWN, Phase.IDLE),
    (Phase.INSTALL, Event.INSTALLED, Phase.IDLE),
    (Phase.INSTALL, Event.CANCEL, Phase.INSTALL),
    (Phase.INSTALL, Event.FAILED, Phase.IDLE),
    (Phase.CANCEL, Event.CLEANED, Phase.IDLE),
    (Phase.INSTALL, Event.STAGED, Phase.REBOOT_WAIT),
    (Phase.INSTALL, Event.RETRY, Phase.WAIT),
    (Phase.REBOOT_WAIT, Event.ACTIVATE, Phase.INSTALL),
    (Phase.REBOOT_WAIT, Event.ABANDON, Phase.INSTALL),
    (Phase.REBOOT_WAIT, Event.CANCEL, Phase.INSTALL),
    (Phase.DOWNLOAD, Event.TOO_MANY_STARTS, Phase.IDLE),
    (Phase.CANCEL, Event.TOO_MANY_STARTS, Phase.IDLE),
])
def test_transitions(phase: Phase, event: Event, expected: Phase) -> None:
    assert step(phase, event) is expected


def test_what_the_table_does_not_allow_is_a_bug_not_a_guess() -> None:
    allowed = set(TRANSITIONS)
    for phase in Phase:
        for event in Event:
            if (phase, event) not in allowed:
                with pytest.raises(ActionFlowError, match=f"from {phase.value} on {event.value}"):
                    step(phase, event)
    # No deployment is taken while another is in hand.
    assert not any(p is not Phase.IDLE and e in (Event.DEPLOYMENT, Event.HELD) for p, e in allowed)


def test_every_phase_resumes_and_every_phase_reaches_idle() -> None:
    assert set(RESUME) == set(Phase)
    for phase in Phase:
        seen, frontier = {phase}, [phase]
        while frontier:
            current = frontier.pop()
            for (source, _event), target in TRANSITIONS.items():
                if source is current and target not in seen:
                    seen.add(target)
                    frontier.append(target)
        assert Phase.IDLE in seen, phase


def test_the_phase_table_of_docs_daemon_md_is_the_codes() -> None:
    """Each phase once in docs/daemon.md's table, in the code's order, and every next phase the
    table names reachable from it in TRANSITIONS."""
    rows = [line.split("|")[1:4] for line in (ROOT / "docs/daemon.md").read_text().splitlines()
            if re.match(r"\| `[a-z-]+` \|", line)]
    assert [name.strip().strip("`") for name, _, _ in rows] == [p.value for p in Phase]
    for name, _, nexts in rows:
        phase = Phase(name.strip().strip("`"))
        reachable = {target.value for (source, _event), target in TRANSITIONS.items() if source is phase}
        named = set(re.findall(r"`([a-z-]+)`", nexts)) & {p.value for p in Phase}
        assert named and named <= reachable, (phase, named, reachable)


def docs_section(title: str) -> str:
    text = (ROOT / "docs/daemon.md").read_text()
    start = text.index(title)
    end = text.find("\n#", start + len(title))
    return text[start:end if end != -1 else None]


def event_kinds() -> set[str]:
    from agent.daemon import events

    return {cls.kind for cls in vars(events).values()
            if isinstance(cls, type) and issubclass(cls, events.DaemonEvent) and cls is not events.DaemonEvent}


def test_the_events_of_docs_daemon_md_are_the_codes() -> None:
    """The thread table names every event a thread posts; with the start, the timer and the look
    at a gate, that is every kind of event there is."""
    section = docs_section("## Threads and events")
    posted = {name for line in section.splitlines() if line.startswith("| ") and not line.startswith("| thread")
              for name in re.findall(r"`([a-z-]+)`", line.split("|")[3])}
    assert posted | {"start", "timer", "gate-check"} == event_kinds()
    assert "(`timer`)" in section and "(`start`)" in section and "(`gate-check`" in section


def test_the_machine_of_docs_daemon_md_is_the_codes() -> None:
    """The events the runner hands the machine and the effects table, as the code has them."""
    from agent.daemon import effects, machine

    section = docs_section("### The machine and its runner")
    handed = section[section.index("The runner hands the machine"):section.index("and carries out")]
    assert set(re.findall(r"`([a-z-]+)`", handed)) == {cls.kind for cls in machine.HANDLERS}
    rows = [line.split("|")[1].strip().strip("`") for line in section.splitlines() if re.match(r"\| `[A-Z]", line)]
    assert rows == [cls.__name__ for cls in effects.Effect.__args__]


def test_starts_in_a_row_count_only_while_nothing_gets_done() -> None:
    assert starts_after(Phase.DOWNLOAD, 3, "same", "same") == 4
    assert starts_after(Phase.DOWNLOAD, 3, "more", "less") == 1        # the download got further
    assert starts_after(Phase.DOWNLOAD, 0, "first", None) == 1


@pytest.mark.parametrize(("phase", "starts", "expected"), [
    (Phase.DOWNLOAD, MAX_STARTS, False),
    (Phase.DOWNLOAD, MAX_STARTS + 1, True),       # a crash loop in the download: given up, reported
    (Phase.CANCEL, MAX_STARTS + 1, True),
    (Phase.WAIT, 1000, False),                    # waiting for a window through power cuts is no loop
    (Phase.APPROVAL, 1000, False),                # nor is waiting for approval
    (Phase.INSTALL, 1000, False),                 # the install's own flow bounds its restarts
    (Phase.IDLE, 1000, False),
])
def test_a_crash_loop_is_forced_down_the_failure_path(phase: Phase, starts: int, expected: bool) -> None:
    assert forced(phase, starts) is expected


# --- deployment plans -------------------------------------------------------------------------


def artifact(name: str, **hashes: str) -> Artifact:
    return Artifact(filename=name, size=10, hashes=hashes or {"sha256": "ab" * 32}, url=f"https://s/{name}")


def deployment(*artifacts: Artifact, encrypted: bool = False, window: str | None = None) -> Deployment:
    return Deployment("7", "forced", "forced", window, (Chunk("os", "gw", "2.0", artifacts, encrypted=encrypted),))


SERVER = LinkPolicy.for_server("https://s")


def test_one_artifact_is_a_bundle() -> None:
    plan = plan_action(deployment(artifact("u.fwb")), SERVER)
    assert plan.kind == "bundle" and plan.main.filename == "u.fwb" and plan.version == "2.0"
    assert plan.fetch_first(True) == () and plan.fetch_first(False) == (plan.main,)   # streamed, or fetched to wait


def test_a_manifest_and_its_payloads() -> None:
    plan = plan_action(deployment(artifact("rootfs.img"), artifact("update.suit"), artifact("boot.img")), SERVER)
    assert plan.kind == "manifest" and plan.main.filename == "update.suit"
    assert [a.filename for a in plan.fetch_first(True)] == ["update.suit"]
    assert [a.filename for a in plan.fetch_first(False)] == ["update.suit", "rootfs.img", "boot.img"]
    assert plan.links({"update.suit": "/d/artifact-0"}) == {"#rootfs.img": "https://s/rootfs.img",
                                                           "#boot.img": "https://s/boot.img"}
    assert plan.links({"update.suit": "/d/artifact-0", "rootfs.img": "/d/artifact-1"}) == {
        "#rootfs.img": "file:///d/artifact-1", "#boot.img": "https://s/boot.img"}
    assert ActionPlan.from_dict(plan.as_dict()) == plan


def test_local_files_are_named_by_the_agent() -> None:
    plan = plan_action(deployment(artifact("..u.suit"), artifact("-rf"), artifact("x" * 200)), SERVER)
    assert plan.local_names() == {"..u.suit": "artifact-0", "-rf": "artifact-1", "x" * 200: "artifact-2"}


def link(name: str, url: str) -> Artifact:
    return Artifact(filename=name, size=10, hashes={"sha256": "ab" * 32}, url=url)


@pytest.mark.parametrize(("url", "code"), [
    ("https://evil.example/u.fwb", "foreign-link"),
    ("https://s:8443/u.fwb", "foreign-link"),                 # another port is another origin
    ("http://s/u.fwb", "insecure-link"),                      # the server is https
    ("file:///etc/shadow", "unsupported-link"),
    ("ftp://s/u.fwb", "unsupported-link"),
])
def test_an_artifact_link_the_policy_refuses_fails_the_plan(url: str, code: str) -> None:
    with pytest.raises(PlanError) as caught:
        plan_action(deployment(link("u.fwb", url)), SERVER)
    assert caught.value.code == code


def test_a_host_the_configuration_lists_may_serve_artifacts() -> None:
    policy = LinkPolicy.for_server("https://s", ("cdn.example", "mirror.example:8443"))
    plan_action(deployment(link("u.suit", "https://cdn.example/u.suit"),
                           link("r.img", "https://mirror.example:8443/r.img")), policy)
    with pytest.raises(PlanError) as caught:
        plan_action(deployment(link("u.fwb", "https://mirror.example/u.fwb")), policy)
    assert caught.value.code == "foreign-link"


@pytest.mark.parametrize(("artifacts", "message"), [
    ((artifact("a.bin"), artifact("b.bin")), "2 artifacts and no manifest"),
    ((artifact("a.suit"), artifact("b.suit")), "2 manifest artifacts"),
    ((Artifact("u.fwb", 1, {"sha256": "ab" * 32}, None),), "no download link"),
    ((Artifact("u.fwb", 1, {}, "https://s/u"),), "no sha256, sha1 or md5"),
    ((artifact("a.suit"), artifact("a.suit")), "share a file name"),
    ((), "0 artifacts"),
])
def test_unusable_deployments_are_refused_with_the_reason(artifacts: tuple, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_action(deployment(*artifacts), SERVER)


def test_encrypted_artifacts_are_refused() -> None:
    with pytest.raises(PlanError) as caught:
        plan_action(deployment(artifact("u.fwb"), encrypted=True), SERVER)
    assert caught.value.code == "ddi-encrypted"


def test_the_servers_sha256_must_agree_with_the_signed_manifest() -> None:
    plan = plan_action(deployment(artifact("update.suit"), artifact("rootfs.img", sha256="cd" * 32)), SERVER)
    check_payloads(plan, [("#rootfs.img", bytes.fromhex("cd" * 32))])
    with pytest.raises(PlanError) as caught:
        check_payloads(plan, [("#rootfs.img", bytes.fromhex("ef" * 32))])
    assert caught.value.code == "ddi-hash-mismatch"
    with pytest.raises(PlanError, match="fetches #other.img, which the deployment does not carry"):
        check_payloads(plan, [("#other.img", None)])
    check_payloads(plan, [("https://elsewhere/x.img", None)])        # not the deployment's to check


def test_the_strongest_hash_is_used() -> None:
    assert strongest_hash(artifact("a", sha1="11", md5="22")) == ("sha1", "11")
    assert strongest_hash(artifact("a", sha1="11", sha256="33")) == ("sha256", "33")
    assert strongest_hash(artifact("a", md5="22")) == ("md5", "22")


# --- poll delays after errors -------------------------------------------------------------------

POLICY = PollPolicy(minimum=30, maximum=86400, default=300, jitter=0.1)


def test_refused_credentials_are_retried_slowly_and_ever_slower() -> None:
    rng = random.Random(1)
    auth = DdiError("401", code="ddi-auth", status=401, transient=True)
    first = poll_after_error(auth, 1, POLICY, rng)
    assert 300 <= first <= 330
    assert poll_after_error(auth, 4, POLICY, rng) >= 2400
    assert poll_after_error(auth, 30, POLICY, rng) <= 86400 * 1.1


def test_a_quota_answer_waits_for_the_server_not_a_quick_retry() -> None:
    rng = random.Random(2)
    quota = DdiError("429", code="ddi-quota", status=429, retry_after=None)
    assert poll_after_error(quota, 1, POLICY, rng) == 300
    assert poll_after_error(DdiError("429", code="ddi-quota", retry_after=900), 1, POLICY, rng) == 900
    assert poll_after_error(DdiError("429", code="ddi-quota", retry_after=1), 1, POLICY, rng) == 30


def test_network_errors_back_off_with_full_jitter_up_to_the_default_interval() -> None:
    rng = random.Random(3)
    down = DdiError("x", code="ddi-unreachable", transient=True)
    early = [poll_after_error(down, 1, POLICY, rng) for _ in range(200)]
    late = [poll_after_error(down, 10, POLICY, rng) for _ in range(200)]
    assert max(early) <= 30 and min(early) >= 1
    assert max(late) <= 300 and max(late) > 200
    assert poll_after_error(DdiError("x", code="ddi-busy", retry_after=12), 1, POLICY, rng) == 12
    assert 1 <= poll_after_error(None, 1, POLICY, rng) <= 30


# --- structured logs -----------------------------------------------------------------------------


def test_log_lines_are_logfmt_with_quoting() -> None:
    line = format_line("info", "poll", {"action": 12, "msg": 'a "quoted" = text\nnext', "none": None})
    assert line == 'level=info event=poll action=12 msg="a \\"quoted\\" = text\\nnext"'
    assert format_line("error", "x", {}, prefix=True) == "<3>level=error event=x"


def test_the_log_writes_whole_lines_from_many_threads() -> None:
    stream = io.StringIO()
    log = Log(stream)
    threads = [threading.Thread(target=lambda i=i: [log.info("tick", n=i, k=k) for k in range(200)])
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1600 and all(line.startswith("level=info event=tick n=") for line in lines)


# --- the job worker --------------------------------------------------------------------------------


def test_a_keyed_job_replaces_the_pending_one_and_unkeyed_jobs_all_run_in_order() -> None:
    errors: list[tuple[str, BaseException]] = []
    worker = JobWorker("test", lambda key, exc: errors.append((key, exc)))
    gate, ran = threading.Event(), []
    worker.submit(None, gate.wait)
    for n in range(5):
        worker.submit("progress", lambda n=n: ran.append(("progress", n)))
        worker.submit(None, lambda n=n: ran.append(("step", n)))
    worker.submit("boom", lambda: 1 / 0)
    assert worker.busy("progress")
    gate.set()
    worker.start()
    worker.close(5)
    assert [r for r in ran if r[0] == "step"] == [("step", n) for n in range(5)]
    assert [r for r in ran if r[0] == "progress"] == [("progress", 4)]
    assert len(errors) == 1 and errors[0][0] == "boom" and isinstance(errors[0][1], ZeroDivisionError)
    assert not worker.thread.is_alive()


def test_closing_stops_at_the_deadline_with_jobs_left() -> None:
    worker = JobWorker("test", lambda key, exc: None)
    ran: list[int] = []
    worker.start()
    worker.submit(None, lambda: threading.Event().wait(0.5))
    for n in range(3):
        worker.submit(None, lambda n=n: ran.append(n))
    worker.close(0.1)
    assert ran == [] and not worker.thread.is_alive()
