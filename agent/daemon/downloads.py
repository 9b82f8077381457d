"""The download worker: fetches what an action needs before its install into its directory
under ``state_dir/incoming``, checks it, and posts what it did to the orchestrator's queue.

Runs on its own thread; every wait is the downloader's, bounded by its timeouts and stopped
by ``cancel``. Names on disk are the plan's (``artifact-<n>``), never the server's.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.daemon.events import Checkpoint, DaemonEvent, Downloaded, DownloadFailed, DownloadProgress, Fetched
from agent.daemon.plan import ActionPlan, check_payloads, download_dir, strongest_hash
from agent.download.downloader import DownloadError, Downloader, Resume
from agent.download.sinks import FileSink
from agent.files import private_dir
from agent.install.installer import Installer
from agent.install.slots import read_chunks


def download_action(post: Callable[[DaemonEvent], None], downloader: Downloader, installer: Installer,
                    incoming: Path, action: str, plan: ActionPlan, artifacts: list[Any],
                    resumes: dict[str, Any], cancel: threading.Event) -> None:
    """Fetch ``artifacts`` (resuming from ``resumes``), then check the signed manifest; ends by
    posting Downloaded, or DownloadFailed with whatever went wrong."""
    directory = download_dir(incoming, action)
    names = plan.local_names()
    try:
        private_dir(incoming)
        private_dir(directory)
        for artifact in artifacts:
            path = directory / names[artifact.filename]
            fetch(post, downloader, action, artifact, path, Resume.from_dict(resumes.get(artifact.filename)), cancel)
            post(Fetched(action, artifact.filename, str(path)))
        # A bundle that streams at the install: its manifest is checked from the stream's head.
        main = directory / names[plan.main.filename]
        _, checked = installer.check_source(str(main) if main.exists() else plan.main.url)
        check_payloads(plan, [(ref.uri, ref.digest) for ref in checked.payloads])
        from agent.manifest.describe import manifest_version     # with the manifest machinery
        post(Downloaded(action, manifest_version(checked.manifest)))
    except Exception as err:   # noqa: BLE001 - whatever it was, the orchestrator must hear of it
        post(DownloadFailed(action, err))


def fetch(post: Callable[[DaemonEvent], None], downloader: Downloader, action: str, artifact: Any, path: Path,
          resume: Resume | None, cancel: threading.Event) -> None:
    """One artifact into a file; the server's hash checked (SHA-256 by the downloader itself)."""
    algorithm, expected = strongest_hash(artifact)
    with FileSink(path, artifact.size) as sink:
        downloader.fetch(
            artifact.url, sink, size=artifact.size,
            digest=bytes.fromhex(expected) if algorithm == "sha256" else None, resume=resume,
            checkpoint=lambda r: post(Checkpoint(action, artifact.filename, r.as_dict())),
            cancel=cancel,
            progress=lambda p: post(DownloadProgress(action, artifact.filename, p.done, p.total)))
    if algorithm != "sha256":
        digest = hashlib.new(algorithm, usedforsecurity=False)
        with open(path, "rb") as stream:
            for chunk in read_chunks(stream.fileno(), artifact.size, str(path)):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            path.unlink(missing_ok=True)
            raise DownloadError(f"{artifact.filename}: its {algorithm} is not the server's",
                                code="ddi-hash-mismatch")
