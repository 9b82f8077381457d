"""The shipped unit (systemd/fwagent.service) and its drop-in example, as systemd reads them.

``systemd-analyze verify`` has nothing to say about them; the sandbox's exposure
(``systemd-analyze security --offline=true``) is 2.5 or less; every path the agent writes on
a gateway (the default configuration's, the bench gateways') is one the unit leaves writable;
and the agent's native code (OpenSSL, cryptography, CBOR) updates a slot over https without
memory that is both writable and executable, as MemoryDenyWriteExecute= demands.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest
from conftest import TESTS, missing, require_tool

from bootloader_bridge.bootchooser.file import FileBootloader
from bootloader_bridge.bootchooser.grub import GrubBootloader

ROOT = TESTS.parent
UNIT = ROOT / "systemd/fwagent.service"
DROP_IN = ROOT / "systemd/fwagent.service.d/site-paths.conf.example"
MOST_EXPOSURE = 2.5


def analyze() -> str:
    tool = require_tool("systemd-analyze", "systemd")
    if "--offline" not in subprocess.run([tool, "--help"], capture_output=True, text=True, timeout=30).stdout:
        missing("systemd-analyze security --offline needs systemd 250 or newer")
    return tool


def unit_copy(directory: Path, *, drop_in: bool = False) -> Path:
    """The unit in ``directory``, its ExecStart= pointing at a program that exists here (verify
    checks it); with ``drop_in``, the example drop-in beside it with every setting uncommented."""
    directory.mkdir(parents=True, exist_ok=True)
    true = shutil.which("true") or "/bin/true"
    text = UNIT.read_text()
    assert "ExecStart=/usr/bin/fwagent run\n" in text
    (directory / UNIT.name).write_text(text.replace("ExecStart=/usr/bin/fwagent", f"ExecStart={true}"))
    if drop_in:
        lines = [re.sub(r"^#(?=[A-Z][A-Za-z]*=)", "", line) for line in DROP_IN.read_text().splitlines()]
        text = "\n".join(lines).replace("char-<name>", "char-ttymxc").replace("=/srv/fwagent /mnt/boot", "=-/srv/fwagent")
        text = text.replace("=/var/lib/myapp", "=-/var/lib/myapp")
        (directory / "fwagent.service.d").mkdir(exist_ok=True)
        (directory / "fwagent.service.d/site-paths.conf").write_text(text + "\n")
    return directory / UNIT.name


def run_analyze(args: list[str], directory: Path) -> subprocess.CompletedProcess[str]:
    # The directory first in the unit path: drop-ins beside the unit are read, as in /etc/systemd/system.
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{directory}:", "SYSTEMD_LOG_LEVEL": "notice"}
    return subprocess.run([analyze(), *args], capture_output=True, text=True, env=env, timeout=120)


def settings(name: str, text: str | None = None) -> list[str]:
    """Every value of the unit's setting ``name`` (a setting may come more than once)."""
    text = UNIT.read_text() if text is None else text
    return [m.group(1).strip() for m in re.finditer(rf"^{name}=(.*)$", text, re.MULTILINE)]


# --- what systemd says ---------------------------------------------------------------------------


@pytest.mark.parametrize("drop_in", [False, True], ids=["unit", "with-the-drop-in-example"])
def test_systemd_analyze_verify_has_nothing_to_say(tmp_path: Path, drop_in: bool) -> None:
    unit = unit_copy(tmp_path / "units", drop_in=drop_in)
    result = run_analyze(["verify", str(unit)], tmp_path / "units")
    said = [line for line in (result.stdout + result.stderr).splitlines() if "fwagent" in line or str(tmp_path) in line]
    assert result.returncode == 0 and said == [], result.stdout + result.stderr


def test_the_drop_in_example_changes_the_unit(tmp_path: Path) -> None:
    """(So that the verify above reads it: a drop-in systemd did not read would change nothing.)"""
    plain = run_analyze(["security", "--offline=true", str(unit_copy(tmp_path / "a"))], tmp_path / "a")
    widened = run_analyze(["security", "--offline=true", str(unit_copy(tmp_path / "b", drop_in=True))],
                          tmp_path / "b")
    assert exposure(plain.stdout) < exposure(widened.stdout)


def exposure(report: str) -> float:
    found = re.search(r"Overall exposure level for fwagent\.service: (\d+\.\d+)", report)
    assert found, report
    return float(found.group(1))


def test_the_sandbox_exposure_is_at_most_2_5(tmp_path: Path) -> None:
    unit = unit_copy(tmp_path / "units")
    result = run_analyze(["security", "--offline=true", f"--threshold={int(MOST_EXPOSURE * 10)}", str(unit)],
                         tmp_path / "units")
    assert result.returncode == 0, result.stdout + result.stderr
    assert exposure(result.stdout) <= MOST_EXPOSURE, result.stdout


# --- what the unit leaves writable ----------------------------------------------------------------


def writable() -> list[PurePosixPath]:
    return [PurePosixPath(path.lstrip("-")) for value in settings("ReadWritePaths") for path in value.split()]


def is_writable(path: PurePosixPath) -> bool:
    if path.is_relative_to("/dev"):
        return True                             # device nodes: DeviceAllow= decides (block devices, ttys)
    if path.is_relative_to("/tmp"):
        return "yes" in settings("PrivateTmp")
    runtime = [PurePosixPath("/run") / name for value in settings("RuntimeDirectory") for name in value.split()]
    if any(path == root or path.is_relative_to(root) for root in runtime):
        return True
    return any(path == root or path.is_relative_to(root) for root in writable())


def written(config: dict, fw_env: str | None) -> dict[str, PurePosixPath]:
    """What the agent writes with this configuration (agent.toml as parsed TOML), by role."""
    device, bootloader = config.get("device", {}), config.get("bootloader", {})
    paths = {"state directory": PurePosixPath(device.get("state_dir", "/var/lib/fwagent")),
             "runtime directory": PurePosixPath(device.get("runtime_dir", "/run/fwagent"))}
    kind = bootloader.get("type", "grub")
    if kind == "grub":      # grub-editenv writes grubenv.new beside grubenv, then renames it
        paths["grubenv's directory"] = PurePosixPath(bootloader.get("grubenv", _default(GrubBootloader, "grubenv"))).parent
    elif kind == "uboot":
        assert fw_env is not None, "a U-Boot gateway names its environment in fw_env.config"
        for number, line in enumerate(l for l in fw_env.splitlines() if l.strip() and not l.startswith("#")):
            paths[f"U-Boot environment {number}"] = PurePosixPath(line.split()[0])
        paths["fw_setenv's lock file"] = PurePosixPath("/run/lock/fw_printenv.lock")     # (/var/lock links to it)
    else:
        paths["boot environment file"] = PurePosixPath(bootloader.get("env_file", _default(FileBootloader, "env_file")))
    for slot_class, slots in config.get("slots", {}).items():
        for name, slot in slots.items():
            if isinstance(slot, dict) and "device" in slot:
                paths[f"slot {slot_class}.{name}"] = PurePosixPath(slot["device"])
    return paths


def _default(backend: type, key: str) -> str:
    return next(option.default for option in backend.OPTIONS if option.key == key)


def bench_gateways() -> list[Path]:
    return sorted((ROOT / "hil/images").glob("*/agent.toml"))


@pytest.mark.parametrize("config", ["defaults", *bench_gateways()],
                         ids=lambda c: c if isinstance(c, str) else c.parent.name)
def test_every_path_the_agent_writes_is_writable_under_the_unit(config: str | Path) -> None:
    if config == "defaults":
        paths = written({"bootloader": {"type": "grub"}}, None) | written({"bootloader": {"type": "custom"}}, None)
    else:
        fw_env = Path(config).parent / "rootfs/etc/fw_env.config"
        paths = written(tomllib.loads(Path(config).read_text()), fw_env.read_text() if fw_env.exists() else None)
    refused = {role: str(path) for role, path in paths.items() if not is_writable(path)}
    assert refused == {}, f"ReadWritePaths={' '.join(settings('ReadWritePaths'))}"
    mounts = [PurePosixPath(p) for value in settings("RequiresMountsFor") for p in value.split()]
    state = paths["state directory"]
    assert any(state == m or state.is_relative_to(m) for m in mounts), "RequiresMountsFor= misses the state directory"


def test_the_bench_gateways_are_among_those_checked() -> None:
    assert any(path.parent.name == "x86" for path in bench_gateways())


def test_the_unit_is_a_notify_service_with_a_watchdog_and_its_own_log_name() -> None:
    assert settings("Type") == ["notify"] and settings("NotifyAccess") == ["main"]
    assert settings("WatchdogSec") and settings("SyslogIdentifier") == ["fwagent"]
    assert settings("Restart") == ["on-failure"]        # a watchdog timeout is a failure: restarted


# --- MemoryDenyWriteExecute= ----------------------------------------------------------------------

W_X_CHILD = r"""
import ctypes, sys
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:      # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("memory both writable and executable was given: this check would check nothing")
except OSError:
    pass

import datetime, functools, http.server, ssl, threading
from pathlib import Path
from install_bench import make_gateway
from pki import Authority

root = Path(sys.argv[1])
gateway = make_gateway(root / "gw")
gateway.bundle("u2", sequence=2, version="2.0.0")
ca = Authority("fwagent test CA", datetime.datetime.now(datetime.timezone.utc))
ca_file, issued = ca.write(root / "ca.pem"), ca.issue(root, "server", ips=("127.0.0.1",))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(issued.cert, issued.key)
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(gateway.root))
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
gateway.config_path.write_text(gateway.config_path.read_text() + f'\n[download]\nca_file = "{ca_file}"\n')

from agent.cli import main
sys.exit(main(["install", f"https://127.0.0.1:{server.server_port}/u2.fwb", "--no-reboot", "--json",
               "--config", str(gateway.config_path)]))
"""


def test_an_update_over_https_needs_no_memory_both_writable_and_executable(tmp_path: Path) -> None:
    """The kernel's own W^X switch (PR_SET_MDWE, Linux 6.3) refuses what MemoryDenyWriteExecute=
    refuses: memory mapped, or made, writable and executable. Under it, a bundle is fetched over
    TLS, its signed manifest verified and its payload written into slot B."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    result = subprocess.run([sys.executable, "-c", W_X_CHILD, str(tmp_path)], capture_output=True, text=True,
                            env=env, timeout=120)
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 or newer)")   # a kernel, not a package: no CI rule
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"result": "pending"' in result.stdout and '"state": "reboot"' in result.stdout, result.stdout
