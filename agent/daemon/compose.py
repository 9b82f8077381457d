"""Build the daemon from the configuration: the one place that picks its parts."""

from __future__ import annotations

import sys
import warnings

from agent.config import Config
from agent.daemon.notify import Notifier
from agent.daemon.orchestrator import Daemon
from agent.ddi.client import DdiClient, auth_header
from agent.download.downloader import Downloader, download_link
from agent.install.compose import build_installer
from agent.log import Log
from agent.net.http import HttpLink, Tls
from agent.net.policy import LinkPolicy


def build_daemon(config: Config, log: Log, notifier: Notifier | None = None) -> Daemon:
    _without_charset_detection()
    link = daemon_link(config)
    client = None
    if config.server is not None:
        server = config.server
        client = DdiClient(server.url, server.tenant, server.controller_id, link=link,
                           timeout=(config.download.connect_timeout, server.timeout), max_answer=server.max_answer)
    downloader = Downloader(config.download, link=link)
    installer = build_installer(config, downloader=downloader)
    mqtt_factory = None
    if config.mqtt is not None:
        from agent.mqtt import MqttLink
        mqtt_factory = MqttLink
    return Daemon(config, installer, client=client, downloader=downloader, log=log, mqtt_factory=mqtt_factory,
                  notifier=notifier)


def daemon_link(config: Config) -> HttpLink:
    """The one HTTP link of the daemon: the server's token, CA and client certificate go to the
    server's origin only; other hosts (those [download].hosts lists) get [download]'s CA and
    client certificate and no token."""
    download, server = config.download, config.server
    if server is None:
        return download_link(download)
    other = Tls.of(download.ca_file, download.client_cert, download.client_key)
    own = Tls.of(server.ca_file, server.client_cert, server.client_key)
    return HttpLink(LinkPolicy.for_server(server.url, download.hosts), server_tls=own, other_tls=other,
                    credentials=auth_header(server.target_token, server.gateway_token), proxy=download.proxy)


def _without_charset_detection() -> None:
    """Keep requests from loading a character-set detector: 2.8 MiB resident for the life of
    the service, to guess the encoding of text answers. fwagent reads JSON, which is UTF-8
    (RFC 8259), and bytes; without a detector requests falls back to UTF-8. Only in a process
    that has not imported requests yet (the service), so nothing else is affected."""
    if "requests" not in sys.modules:
        for name in ("chardet", "charset_normalizer"):
            sys.modules.setdefault(name, None)   # type: ignore[arg-type]  # import now raises ImportError
        warnings.filterwarnings("ignore", message="Unable to find acceptable character detection")
