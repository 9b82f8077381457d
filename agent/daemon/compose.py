"""Build the daemon from the configuration: the one place that picks its parts."""

from __future__ import annotations

import sys
import warnings
from dataclasses import replace

from agent.config import Config
from agent.daemon.orchestrator import Daemon
from agent.ddi.client import DdiClient
from agent.download.downloader import Downloader, make_session
from agent.install.compose import build_installer
from agent.log import Log


def build_daemon(config: Config, log: Log) -> Daemon:
    _without_charset_detection()
    server = config.server
    download = config.download
    if server is not None:
        # Artifacts come from the same server by default: its CA and client certificate.
        download = replace(download, ca_file=download.ca_file or server.ca_file,
                           client_cert=download.client_cert or server.client_cert,
                           client_key=download.client_key or server.client_key)
    session = make_session(download)
    client = None
    if server is not None:
        client = DdiClient(server.url, server.tenant, server.controller_id, session=session,
                           target_token=server.target_token, gateway_token=server.gateway_token,
                           timeout=(download.connect_timeout, server.timeout))
        session.headers.update({k: v for k, v in client.headers.items() if k == "Authorization"})
    downloader = Downloader(download, session=session)
    installer = build_installer(config, downloader=downloader)
    mqtt_factory = None
    if config.mqtt is not None:
        from agent.mqtt import MqttLink
        mqtt_factory = MqttLink
    return Daemon(config, installer, client=client, downloader=downloader, log=log, mqtt_factory=mqtt_factory)


def _without_charset_detection() -> None:
    """Keep requests from loading a character-set detector: 2.8 MiB resident for the life of
    the service, to guess the encoding of text answers. fwagent reads JSON, which is UTF-8
    (RFC 8259), and bytes; without a detector requests falls back to UTF-8. Only in a process
    that has not imported requests yet (the service), so nothing else is affected."""
    if "requests" not in sys.modules:
        for name in ("chardet", "charset_normalizer"):
            sys.modules.setdefault(name, None)   # type: ignore[arg-type]  # import now raises ImportError
        warnings.filterwarnings("ignore", message="Unable to find acceptable character detection")
