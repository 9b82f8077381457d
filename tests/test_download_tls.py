"""Downloads over https from a real nginx: the server checked against a configured CA,
client certificates (mutual TLS), and TLS failures that end at once instead of being retried."""

from __future__ import annotations

import datetime
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.config import DownloadConfig
from agent.download.downloader import DownloadError, Downloader
from agent.download.sinks import FileSink
from httpfaults import NginxServer, TlsFiles, nginx_server, random_bytes, require_nginx
from pki import Authority, Issued

SIZE = 3 << 20
NAME = "image.bin"
FAST = DownloadConfig(connect_timeout=2, stall_timeout=2, max_attempts=6, max_time=60)
QUICK = 2.0      # seconds: a failure that is not retried ends well within this


# --------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Pki:
    ca: Path                 # the CA certificate the device is configured with
    server: Issued           # 127.0.0.1, signed by the CA
    client: Issued           # a device certificate, signed by the CA
    other_name: Issued       # signed by the CA, for 127.0.0.2 only
    expired: Issued          # 127.0.0.1, signed by the CA, expired yesterday
    stranger: Issued         # a client certificate from another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca, other_ca = Authority("fwagent test CA", now), Authority("another CA", now)
    return Pki(
        ca=ca.write(directory / "ca.crt"),
        server=ca.issue(directory, "server", ips=("127.0.0.1",)),
        client=ca.issue(directory, "device-0001", client=True),
        other_name=ca.issue(directory, "elsewhere", ips=("127.0.0.2",)),
        expired=ca.issue(directory, "expired", ips=("127.0.0.1",), expired=True),
        stranger=other_ca.issue(directory, "stranger", client=True),
    )


# --------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def www(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    require_nginx(tls=True)
    root = tmp_path_factory.mktemp("www")
    data = random_bytes(SIZE, seed=7)
    (root / NAME).write_bytes(data)
    return root, data


@pytest.fixture(scope="module")
def https(www, pki: Pki, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tls = TlsFiles(pki.server.cert, pki.server.key)
    with nginx_server(www[0], tmp_path_factory.mktemp("nginx"), tls=tls) as server:
        yield server


@pytest.fixture(scope="module")
def mtls(www, pki: Pki, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tls = TlsFiles(pki.server.cert, pki.server.key, client_ca=pki.ca)
    with nginx_server(www[0], tmp_path_factory.mktemp("nginx-mtls"), tls=tls) as server:
        yield server


class Sleeps:
    """Records the waits the downloader asks for, without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def fetch(server: NginxServer, data: bytes, tmp_path: Path, config: DownloadConfig = FAST,
          sleeps: Sleeps | None = None) -> bytes:
    out = tmp_path / "out.bin"
    with FileSink(out, len(data)) as sink:
        result = Downloader(config, sleep=sleeps or Sleeps()).fetch(
            f"{server.url}/{NAME}", sink, size=len(data), digest=hashlib.sha256(data).digest())
    assert result.size == len(data) and result.attempts == 1
    return out.read_bytes()


def refused(server: NginxServer, data: bytes, tmp_path: Path, config: DownloadConfig = FAST
            ) -> tuple[DownloadError, float, Sleeps, list[str]]:
    """The error a download ends with, how long it took, the waits asked for, the requests nginx logged."""
    sleeps = Sleeps()
    logged = server.access_log.read_text().splitlines() if server.access_log.exists() else []
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        fetch(server, data, tmp_path, config, sleeps)
    elapsed = time.monotonic() - started
    return caught.value, elapsed, sleeps, server.access_log.read_text().splitlines()[len(logged):]


# --------------------------------------------------------------------- tests


def test_the_server_url_is_https(https: NginxServer) -> None:
    assert https.url.startswith("https://127.0.0.1:")


@pytest.mark.parametrize("env_bundle", [False, True], ids=["plain-env", "REQUESTS_CA_BUNDLE-set"])
def test_a_configured_ca_verifies_the_server(https, www, pki, tmp_path, monkeypatch, env_bundle) -> None:  # type: ignore[no-untyped-def]
    """``ca_file`` wins over a CA bundle named in the environment (as on many distributions)."""
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    if env_bundle:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.stranger.cert))    # a bundle without our CA
    _, data = www
    assert fetch(https, data, tmp_path, DownloadConfig(ca_file=pki.ca)) == data


def test_the_system_cas_do_not_know_the_server_and_that_is_final(https, www, tmp_path) -> None:  # type: ignore[no-untyped-def]
    error, elapsed, sleeps, logged = refused(https, www[1], tmp_path)
    assert error.code == "download-tls" and not error.transient
    assert "certificate verify failed" in str(error)
    assert sleeps.waits == [] and elapsed < QUICK and logged == []


def test_mutual_tls_without_a_client_certificate_is_refused_once(mtls, www, pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """nginx completes the handshake and answers 400 "No required SSL certificate was sent"."""
    error, elapsed, sleeps, logged = refused(mtls, www[1], tmp_path, DownloadConfig(ca_file=pki.ca))
    assert error.code == "download-http-400" and not error.transient
    assert sleeps.waits == [] and elapsed < QUICK and len(logged) == 1 and '" 400 ' in logged[0]
    assert "no required SSL certificate" in mtls.error_log.read_text()


def test_mutual_tls_with_a_certificate_from_another_ca_is_refused_once(mtls, www, pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = DownloadConfig(ca_file=pki.ca, client_cert=pki.stranger.cert, client_key=pki.stranger.key)
    error, elapsed, sleeps, logged = refused(mtls, www[1], tmp_path, config)
    assert error.code == "download-http-400" and not error.transient
    assert sleeps.waits == [] and elapsed < QUICK and len(logged) == 1 and '" 400 ' in logged[0]


def test_mutual_tls_with_the_device_certificate(mtls, www, pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = DownloadConfig(ca_file=pki.ca, client_cert=pki.client.cert, client_key=pki.client.key)
    _, data = www
    assert fetch(mtls, data, tmp_path, config) == data


@pytest.mark.parametrize("which, reason", [
    ("other_name", "IP address mismatch"),
    ("expired", "certificate has expired"),
])
def test_a_certificate_from_the_right_ca_but_wrong_is_refused(www, pki, tmp_path, which, reason) -> None:  # type: ignore[no-untyped-def]
    issued: Issued = getattr(pki, which)
    with nginx_server(www[0], tmp_path / "nginx", tls=TlsFiles(issued.cert, issued.key)) as server:
        error, elapsed, sleeps, logged = refused(server, www[1], tmp_path, DownloadConfig(ca_file=pki.ca))
    assert error.code == "download-tls" and reason in str(error)
    assert sleeps.waits == [] and elapsed < QUICK and logged == []
