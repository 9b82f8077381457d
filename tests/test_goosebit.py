"""fwagent's bundle, DDI client and downloader against a real goosebit on loopback.

goosebit is an independent DDI implementation, so these catch what our own
reference server (agent/demo/ddi_server.py) shares with our client by construction:
plain ``application/json``, a ``download`` link (not ``download-http``),
SHA-1-only hashes, its own ETag for If-Range, and the action id being the
software id.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from goosebit_fixture import GoosebitDevice, make_bundle, new_goosebit_device, serve_goosebit  # noqa: F401
from httpfaults import Cut, FaultProxy

from agent.config import DownloadConfig
from agent.ddi.client import DdiClient
from agent.ddi.codec import Deployment, config_data, feedback
from agent.download.downloader import Downloader, DownloadError, Resume
from agent.download.sinks import FileSink
from hil.server.goosebit import GoosebitServer

FAST = DownloadConfig(connect_timeout=2, stall_timeout=5, max_attempts=3, max_time=30)


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def deployed(server: GoosebitServer, device: GoosebitDevice, bundle: Path) -> tuple[DdiClient, Deployment]:
    """Upload ``bundle``, register the device (poll, configData) and assign: the deployment it then sees."""
    software_id = server.upload(bundle)
    client = DdiClient.for_server(server.url, server.tenant, device.id, timeout=(5.0, 10.0))
    assert client.poll().config_data is not None     # a new device is asked for its attributes
    client.send_config_data(config_data(device.attributes("1.0.0")))
    server.assign(device.id, software_id)
    root = client.poll()
    assert root.deployment is not None and root.deployment.endswith(f"/deploymentBase/{software_id}")
    return client, client.deployment(root.deployment)


@pytest.mark.parametrize("fmt, fits", [("newc", True), ("crc", True), ("newc", False)],
                         ids=["newc-hardware", "crc-hardware", "newc-any-hardware"])
def test_goosebit_accepts_a_bundle_from_our_writer(goosebit: GoosebitServer, goosebit_device: GoosebitDevice,
                                                  tmp_path: Path, fmt: str, fits: bool) -> None:
    hardware = goosebit_device.hardware + [(goosebit_device.board, "rev2")] if fits else []
    bundle = make_bundle(tmp_path, "2.1.0", hardware, fmt=fmt)
    software_id = goosebit.upload(bundle)
    try:
        entry = next(s for s in goosebit.software() if s["id"] == software_id)
        assert entry["version"] == "2.1.0" and entry["name"] == bundle.name
        assert entry["size"] == bundle.stat().st_size and entry["hash"] == sha1(bundle)
        compatibility = sorted((c["model"], c["revision"]) for c in entry["compatibility"])
        assert compatibility == (sorted(hardware) if fits else [("default", "default")])
    finally:
        goosebit.delete_software(software_id)     # "any hardware" would collide with later tests


def test_deployment_is_seen_and_downloaded_bit_exact(goosebit: GoosebitServer, goosebit_device: GoosebitDevice,
                                                     tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "2.0.0", goosebit_device.hardware)
    _, deployment = deployed(goosebit, goosebit_device, bundle)
    assert (deployment.download, deployment.update, deployment.maintenance_window) == ("forced", "forced", None)
    [chunk] = deployment.chunks
    [artifact] = chunk.artifacts
    assert chunk.version == "2.0.0" and artifact.filename == bundle.name
    assert artifact.size == bundle.stat().st_size and artifact.hashes == {"sha1": sha1(bundle)}
    assert artifact.url == f"{goosebit.url}/DEFAULT/controller/v1/{goosebit_device.id}/download"

    out = tmp_path / "download.bin"
    with FileSink(out, artifact.size) as sink:
        result = Downloader(FAST).fetch(artifact.url, sink, size=artifact.size,
                                        digest=hashlib.sha256(bundle.read_bytes()).digest())
    assert result.attempts == 1 and sha1(out) == artifact.hashes["sha1"]


def test_interrupted_download_resumes_from_its_record(goosebit: GoosebitServer, goosebit_device: GoosebitDevice,
                                                      tmp_path: Path) -> None:
    """A cut connection leaves a Resume record; the next fetch (a new process, say) continues with
    Range and If-Range carrying goosebit's own ETag, and gets 206 with only the rest."""
    bundle = make_bundle(tmp_path, "2.0.0", goosebit_device.hardware, size=1 << 20)
    _, deployment = deployed(goosebit, goosebit_device, bundle)
    artifact = deployment.chunks[0].artifacts[0]
    out = tmp_path / "download.bin"
    records: list[Resume] = []
    with FaultProxy(goosebit.port, [Cut(300_000)]) as proxy:
        url = artifact.url.replace(goosebit.url, proxy.url)
        with FileSink(out, artifact.size) as sink, pytest.raises(DownloadError):
            Downloader(DownloadConfig(connect_timeout=2, stall_timeout=5, max_attempts=1)).fetch(
                url, sink, size=artifact.size, checkpoint=records.append)
        record = records[-1]
        assert 0 < record.offset <= 300_000 and record.validator and record.url == url
        assert out.stat().st_size == record.offset

        with FileSink(out, artifact.size) as sink:
            result = Downloader(FAST).fetch(url, sink, size=artifact.size, resume=record)
        resumed = proxy.requests[-1].headers
        assert resumed["Range"] == f"bytes={record.offset}-" and resumed["If-Range"] == record.validator
        assert proxy.bytes_served < artifact.size + 4096      # the resumed part was not fetched again
    assert result.restarts_from_zero == 0 and result.size == artifact.size
    assert sha1(out) == artifact.hashes["sha1"] and out.read_bytes() == bundle.read_bytes()


def test_success_feedback_finishes_on_the_new_version(goosebit: GoosebitServer, goosebit_device: GoosebitDevice,
                                                      tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "2.0.0", goosebit_device.hardware)
    client, deployment = deployed(goosebit, goosebit_device, bundle)
    # goosebit's progress comes only from SWUpdate's "Downloaded NN%" wording; it needs progress.of.
    client.send_feedback("deploymentBase", deployment.action_id,
                         feedback("proceeding", details=["Downloaded 50%"], progress=(1, 2)))
    state = goosebit.device(goosebit_device.id)
    assert (state["last_state"], state["progress"], state["sw_version"]) == ("Running", 50, "1.0.0")

    client.send_feedback("deploymentBase", deployment.action_id,
                         feedback("closed", "success", details=["installed and booted 2.0.0"]))
    state = goosebit.device(goosebit_device.id)
    assert (state["last_state"], state["progress"], state["sw_version"]) == ("Finished", 100, "2.0.0")
    assert "installed and booted 2.0.0" in goosebit.log(goosebit_device.id)
    assert client.poll().deployment is None


def test_failure_feedback_leaves_an_error(goosebit: GoosebitServer, goosebit_device: GoosebitDevice,
                                          tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "2.0.0", goosebit_device.hardware)
    client, deployment = deployed(goosebit, goosebit_device, bundle)
    client.send_feedback("deploymentBase", deployment.action_id,
                         feedback("proceeding", details=["Downloaded 10%"], progress=(0, 1)))
    client.send_feedback("deploymentBase", deployment.action_id,
                         feedback("closed", "failure", details=["health check failed, rolled back"]))
    state = goosebit.device(goosebit_device.id)
    assert (state["last_state"], state["sw_version"]) == ("Error", "1.0.0")
    assert "health check failed" in goosebit.log(goosebit_device.id)
    assert client.poll().deployment is None           # goosebit's Error is sticky until force_update
    goosebit.force_update(goosebit_device.id)
    assert client.poll().deployment is not None


def test_the_daemon_updates_a_device_that_goosebit_shows_finished_on_the_new_version(
        goosebit: GoosebitServer, goosebit_device: GoosebitDevice, tmp_path: Path) -> None:
    """The whole loop against a server fwagent did not write: register, configData, deployment,
    sha1-only artifact, install, simulated reboot, health, commit, closed+success, configData."""
    from agent.manifest import cose
    from install_bench import make_gateway
    from test_daemon import Running, wait_for

    gateway = make_gateway(tmp_path / "gw")
    text = gateway.config_path.read_text().replace(
        'state_dir = "state"', f'state_dir = "state"\nhardware_board = "{goosebit_device.board}"\n'
        f'hardware_revision = "{goosebit_device.revision}"')
    gateway.config_path.write_text(text + f'\n[server]\nurl = "{goosebit.url}"\ntenant = "{goosebit.tenant}"\n'
                                   f'controller_id = "{goosebit_device.id}"\nstartup_spread = 0\npoll_min = 1\n')
    bundle = make_bundle(tmp_path, "2.0.0", goosebit_device.hardware, sequence=2,
                         key=cose.load_private_key(gateway.root / "release.pem"))
    software = goosebit.upload(bundle)
    daemon = Running(gateway, None, tmp_path / "daemon.log")   # type: ignore[arg-type]
    try:
        wait_for(lambda: _state(goosebit, goosebit_device.id).get("hw_model") not in (None, "default")
                 or _registered(goosebit, goosebit_device.id), "registration", poke=daemon)
        goosebit.assign(goosebit_device.id, software, wait=30)
        wait_for(lambda: _state(goosebit, goosebit_device.id).get("last_state") == "Finished", "Finished",
                 timeout=60, poke=daemon)
    finally:
        daemon.stop()
    device = goosebit.device(goosebit_device.id)
    assert device["sw_version"] == "2.0.0" and gateway.booted() == "B", device
    log = goosebit.log(goosebit_device.id)
    assert "Downloaded" in str(log) and "installing into slot B" in str(log), log
    assert "level=error" not in daemon.log(), daemon.log()


def _state(goosebit: GoosebitServer, device: str) -> dict:
    try:
        return goosebit.device(device)
    except Exception:                       # noqa: BLE001 - not registered yet
        return {}


def _registered(goosebit: GoosebitServer, device: str) -> bool:
    return bool(_state(goosebit, device))
