"""goosebit, a real DDI server, run on loopback for tests: ``GoosebitServer``.

goosebit (PyPI, Apache-2.0) is an independent, simplistic implementation of
hawkBit's DDI API. It is a test-only tool: it lives in a venv of its own
(``$FWAGENT_GOOSEBIT``, default ``<repo>/.cache/goosebit-venv``, made by
``.ci/run`` with the pins in ``goosebit-constraints.txt``) and never in the
agent's dependencies. The server process is started from that venv; this
module itself needs only ``requests``.

``with GoosebitServer() as server:`` migrates a fresh SQLite database in a
temporary directory, starts ``uvicorn goosebit:app`` on a free 127.0.0.1 port
(its output goes to ``server.log`` there), and creates an admin user for the
management calls (``upload``, ``assign``, ``device``, ``log``). Devices
register themselves on their first DDI request; the DDI action id is the
software id.

Caveats of goosebit 0.2.12 this module works around or leaves to the caller:

* ``POST /setup`` creates an admin without authentication, at any time, and
  ``python -m goosebit`` binds 0.0.0.0: so uvicorn is run directly and bound
  to 127.0.0.1 only.
* Its default database, artifacts and settings paths point into its
  site-packages, and environment variables ``GOOSEBIT_*`` beat its YAML: the
  database and artifacts directory are set explicitly, and inherited
  ``GOOSEBIT_*`` variables are dropped.
* ``GET /api/v1/devices/{id}`` answers 500 once software is assigned:
  ``device()`` filters the device list instead. ``PATCH /api/v1/devices``
  answers 500 for an unknown id: ``assign()`` uses ``PUT`` (get or create).
* Assigning software whose hardware compatibility does not include the
  device's hardware (``default/default`` until the device sends configData
  with ``hw_boardname``/``hw_revision``) is refused.
* Uploads must be SWUpdate ``.swu`` (cpio, ``sw-description`` first) or RAUC
  bundles; the same version with overlapping compatibility is refused (409).
* A 500 leaves no trace in its log; the device state ``Error`` is sticky
  until ``force_update``; artifacts are hashed with SHA-1 only, and Range
  answers come from Starlette (hence the pinned versions).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Self

import requests

from agent.demo.local import free_port, stop_process

ENV_VAR = "FWAGENT_GOOSEBIT"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO / ".cache" / "goosebit-venv"
CONSTRAINTS = Path(__file__).resolve().parent / "goosebit-constraints.txt"
TENANT = "DEFAULT"

MIGRATE_TIMEOUT = 120.0
START_TIMEOUT = 60.0        # import alone takes 2.5-4.5 s on a loaded two-core machine
STOP_TIMEOUT = 10.0
HTTP_TIMEOUT = 10.0

# Strings as JSON literals, which YAML and TOML read alike. No port: only
# ``python -m goosebit`` reads it, and uvicorn is given its own.
_SETTINGS = """\
tenant: {tenant}
db_uri: {db}
artifacts_dir: {artifacts}
poll_time: {poll_time}
secret_key: fwagent-test-secret-key-not-for-production-0123456789
track_device_ip: true
device_auth:
  enable: false
metrics:
  prometheus:
    enable: false
"""

_AERICH = """\
[tool.aerich]
tortoise_orm = "goosebit.db.config.TORTOISE_CONF"
location = {migrations}
src_folder = "./."
"""


class GoosebitError(RuntimeError):
    """goosebit could not be set up, or a management call failed."""


def venv_dir() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_VENV)


def _package_dir(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python3*/site-packages/goosebit/__init__.py"))
    return found[0].parent if found else None


def available(venv: Path | None = None) -> str | None:
    """Why goosebit cannot run from ``venv`` (default: ``venv_dir()``), or None when it can."""
    venv = Path(venv) if venv is not None else venv_dir()
    install = (f"uv venv {venv} && uv pip install --python {venv} goosebit -c {CONSTRAINTS} "
               f"(.ci/run does this; {ENV_VAR} names another venv)")
    if not venv.is_dir():
        return f"goosebit's venv {venv} does not exist: {install}"
    for tool in ("uvicorn", "aerich"):
        if not (venv / "bin" / tool).is_file():
            return f"{venv}/bin/{tool} is missing: {install}"
    if _package_dir(venv) is None:
        return f"goosebit is not installed in {venv}: {install}"
    return None


class GoosebitServer:
    """A goosebit server on 127.0.0.1 with a fresh database, for the ``with`` block.

    ``workdir``: where its settings, database, artifacts and log go; by default
    a temporary directory, removed at exit (a given directory is left as is).
    """

    def __init__(self, workdir: Path | None = None, *, venv: Path | None = None,
                 poll_time: str = "00:00:30", start_timeout: float = START_TIMEOUT) -> None:
        self.venv = Path(venv) if venv is not None else venv_dir()
        self.poll_time = poll_time
        self.start_timeout = start_timeout
        self._given = Path(workdir) if workdir is not None else None
        self.workdir: Path | None = None
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.session = requests.Session()

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        reason = available(self.venv)
        if reason:
            raise GoosebitError(reason)
        if self._given is not None:
            self._given.mkdir(parents=True, exist_ok=True)
            work = self.workdir = self._given
        else:
            work = self.workdir = Path(tempfile.mkdtemp(prefix="goosebit-"))
        try:
            self._configure(work)
            self._migrate(work)
            self._wait_ready(self._launch(work))
            self.session.headers["Authorization"] = f"Bearer {self._setup_admin()}"
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL it if it lingers; remove the directory made for it."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.session.close()
        if self.workdir is not None and self._given is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    # --- properties --------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise GoosebitError("the server is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def tenant(self) -> str:
        return TENANT

    @property
    def log_path(self) -> Path:
        """The server's own output (uvicorn and goosebit logging)."""
        if self.workdir is None:
            raise GoosebitError("the server is not started")
        return self.workdir / "server.log"

    # --- management --------------------------------------------------------------------

    def upload(self, path: Path) -> int:
        """Upload a ``.swu`` or RAUC bundle; its software id."""
        path = Path(path)
        with path.open("rb") as f:
            body = self._call("PUT", "/api/v1/software", files={"file": (path.name, f)})
        return int(body["id"])

    def software(self) -> list[dict[str, Any]]:
        """Every uploaded software: id, version, size, hash (SHA-1), compatibility, name."""
        return list(self._call("GET", "/api/v1/software")["software"])

    def delete_software(self, software_id: int) -> None:
        """Remove software (and its file), e.g. to free its version and compatibility again."""
        self._call("DELETE", "/api/v1/software", json={"software_ids": [software_id]})

    def assign(self, device_id: str, software_id: int, *, wait: float = 0.0) -> None:
        """Assign software to a device (mode Assigned), creating the device if it is new. With
        ``wait``, a refusal for incompatible hardware is tried again for up to that many seconds:
        a device's configData (its hardware) reaches goosebit some time after its first poll."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self._call("PUT", "/api/v1/devices", json={"devices": [device_id], "software": str(software_id)})
                return
            except GoosebitError as err:
                if "not compatible" not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def force_update(self, device_id: str, force: bool = True) -> None:
        """Offer the target again, even after an error or when the version is already installed."""
        self._call("PUT", "/api/v1/devices", json={"devices": [device_id], "force_update": force})

    def device(self, device_id: str) -> dict[str, Any]:
        """A device as the device list shows it: last_state, sw_version, progress, hardware..."""
        for entry in self._call("GET", "/api/v1/devices")["devices"]:
            if entry["id"] == device_id:
                return dict(entry)
        raise GoosebitError(f"goosebit has no device {device_id!r}")

    def log(self, device_id: str) -> str:
        """The details lines the device sent with its feedback since its last update began."""
        return str(self._call("GET", f"/api/v1/devices/{device_id}/log")["log"] or "")

    # --- plumbing ----------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, self.url + path, timeout=HTTP_TIMEOUT, **kwargs)
        if response.status_code >= 400:
            raise GoosebitError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    def _configure(self, work: Path) -> None:
        """goosebit's settings and aerich's pyproject.toml (the wheel ships none) in ``work``."""
        package = _package_dir(self.venv)
        assert package is not None    # checked by available()
        (work / "artifacts").mkdir(exist_ok=True)
        (work / "goosebit.yaml").write_text(_SETTINGS.format(
            tenant=json.dumps(TENANT), db=json.dumps(f"sqlite://{work / 'db.sqlite3'}"),
            artifacts=json.dumps(str(work / "artifacts")), poll_time=json.dumps(self.poll_time)))
        migrations = json.dumps(str(package / "db" / "migrations"))
        (work / "pyproject.toml").write_text(_AERICH.format(migrations=migrations))

    def _env(self, work: Path) -> dict[str, str]:
        """The environment without anything that could steer goosebit's Python or settings."""
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("GOOSEBIT_") and key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["GOOSEBIT_SETTINGS"] = str(work / "goosebit.yaml")
        return env

    def _migrate(self, work: Path) -> None:
        """Create the schema: goosebit exits at start-up without it."""
        try:
            done = subprocess.run([str(self.venv / "bin" / "aerich"), "upgrade"], cwd=work,
                                  env=self._env(work), capture_output=True, text=True, timeout=MIGRATE_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise GoosebitError(f"aerich upgrade took more than {MIGRATE_TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-2000:]
            raise GoosebitError(f"aerich upgrade failed ({done.returncode}): {output}")

    def _launch(self, work: Path) -> subprocess.Popen[bytes]:
        self.port = free_port()     # picked late: the fewer moments between, the less a race can take it
        self._log = open(work / "server.log", "wb")
        self.process = subprocess.Popen(
            [str(self.venv / "bin" / "uvicorn"), "goosebit:app", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=work, env=self._env(work), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT)
        return self.process

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        """Until the server answers an HTTP request; it fails early when the process ends."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise GoosebitError(f"goosebit exited with {process.returncode}: {self._log_tail()}")
            try:
                requests.get(self.url + "/login", timeout=1.0, allow_redirects=False)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise GoosebitError(f"goosebit did not answer within {self.start_timeout:.0f} s: {self._log_tail()}")

    def _setup_admin(self) -> str:
        admin = {"username": "admin@fwagent.test", "password": "admin"}
        response = requests.post(self.url + "/setup", data=admin, timeout=HTTP_TIMEOUT)
        if response.status_code != 200:
            raise GoosebitError(f"POST /setup: HTTP {response.status_code}: {response.text[:500]}")
        return str(response.json()["access_token"])

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"
