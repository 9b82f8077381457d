"""A/B bootloader backends: one contract for all, then what is particular to each.

GRUB and U-Boot run the real ``grub-editenv`` and ``fw_printenv``/``fw_setenv``
on environments in ``tmp_path``; the custom backend runs a shell script that
keeps its state in a file; the file backend plays the bootloader itself.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from agent.errors import (BootEnvCorruptError, BootloaderError, BootloaderTimeoutError, ConfigError,
                          UsageError)
from bootloader_bridge import cmdline
from bootloader_bridge.bootchooser import registry
from bootloader_bridge.bootchooser.base import Bootloader
from bootloader_bridge.bootchooser.file import FileBootloader
from bootloader_bridge.envcodec import grubenv, ubootenv
from bootloader_bridge.envcodec.listing import parse_listing
from conftest import require_tool

DOCS = Path(__file__).resolve().parent.parent / "docs" / "bootloaders.md"
RAUC_GRUB = {"ORDER": "A B", "A_OK": "1", "B_OK": "1", "A_TRY": "0", "B_TRY": "0"}
RAUC_UBOOT = {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
ENV_SIZE = 0x4000

CUSTOM_SCRIPT = """#!/bin/sh
# A bootloader for tests: boot order and tries left, kept in a file beside this script.
state="$(dirname "$0")/custom-state"
[ -f "$state" ] || printf 'ORDER="A B"\\nA_LEFT=3\\nB_LEFT=3\\nCURRENT=A\\n' > "$state"
. "$state"
save() { printf 'ORDER="%s"\\nA_LEFT=%s\\nB_LEFT=%s\\nCURRENT=%s\\n' "$ORDER" "$A_LEFT" "$B_LEFT" "$CURRENT" > "$state"; }
left() { eval echo "\\$${1}_LEFT"; }
case "$1" in
    set-primary|get-state|set-state)
        case "$2" in A|B) ;; *) echo "no slot $2" >&2; exit 2 ;; esac ;;
esac
case "$1" in
    get-primary) for s in $ORDER; do [ "$(left "$s")" -gt 0 ] && { echo "$s"; exit 0; }; done; true ;;
    set-primary)
        rest=""
        for s in $ORDER; do [ "$s" = "$2" ] || rest="$rest $s"; done
        ORDER="$2$rest"; eval "${2}_LEFT=1"; save ;;
    get-state) if [ "$(left "$2")" -gt 0 ]; then echo good; else echo bad; fi ;;
    set-state) if [ "$3" = good ]; then eval "${2}_LEFT=3"; else eval "${2}_LEFT=0"; fi; save ;;
    get-current) echo "$CURRENT" ;;
    *) echo "unknown command $1" >&2; exit 2 ;;
esac
"""


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def grub_editenv(path: Path, *args: str) -> None:
    subprocess.run([require_tool("grub-editenv"), str(path), *args], check=True, capture_output=True)


def rauc_grubenv(tmp_path: Path) -> Path:
    path = tmp_path / "grubenv"
    grub_editenv(path, "create")
    grub_editenv(path, "set", *(f"{k}={v}" for k, v in RAUC_GRUB.items()))
    return path


def file_backed_uboot(tmp_path: Path, variables: dict[str, str], *, copies: int = 1) -> tuple[Path, list[Path]]:
    """A fw_env.config naming ``copies`` image files, each holding ``variables`` with a valid CRC."""
    require_tool("fw_printenv")
    require_tool("fw_setenv")
    images = [tmp_path / f"uboot-env{index}.bin" for index in range(copies)]
    for image in images:
        image.write_bytes(ubootenv.encode(variables, ENV_SIZE, flag=1 if copies == 2 else None))
    config = tmp_path / "fw_env.config"
    config.write_text("".join(f"{image} 0x0 {ENV_SIZE:#x}\n" for image in images))
    return config, images


# --- one contract, every backend ---------------------------------------------


@dataclass
class Case:
    backend: Bootloader
    raw: Callable[[], dict[str, str]]  # the stored state, read around the backend
    one_try_b: dict[str, str]  # what the stored state holds after set_primary("B")
    good_b: dict[str, str]  # ... after set_state("B", True)
    bad_b: dict[str, str]  # ... after set_state("B", False)


def grub_case(tmp_path: Path) -> Case:
    path = rauc_grubenv(tmp_path)
    return Case(registry.create("grub", env_file=path, timeout=5),
                lambda: grubenv.decode(path.read_bytes()),
                {"ORDER": "B A", "B_OK": "1", "B_TRY": "0"}, {"B_OK": "1", "B_TRY": "0"},
                {"B_OK": "0", "B_TRY": "0"})


def uboot_case(tmp_path: Path, copies: int) -> Case:
    config, images = file_backed_uboot(tmp_path, RAUC_UBOOT, copies=copies)

    def raw() -> dict[str, str]:
        if copies == 1:
            return ubootenv.decode(images[0].read_bytes()).variables
        newest = max((ubootenv.decode(image.read_bytes(), redundant=True) for image in images),
                     key=lambda env: env.flag)
        return newest.variables

    return Case(registry.create("uboot", config=config, timeout=5), raw,
                {"BOOT_ORDER": "B A", "BOOT_B_LEFT": "1"}, {"BOOT_B_LEFT": "3"}, {"BOOT_B_LEFT": "0"})


def custom_case(tmp_path: Path) -> Case:
    script = executable(tmp_path / "bootloader.sh", CUSTOM_SCRIPT)

    def raw() -> dict[str, str]:
        subprocess.run([str(script), "get-current"], check=True, capture_output=True)  # creates the state
        return {k: v.strip('"') for k, v in parse_listing((tmp_path / "custom-state").read_text()).items()}

    return Case(registry.create("custom", script=script, timeout=5), raw,
                {"ORDER": "B A", "B_LEFT": "1"}, {"B_LEFT": "3"}, {"B_LEFT": "0"})


def file_case(tmp_path: Path) -> Case:
    backend = registry.create("file", path=tmp_path / "bootloader.json", cmdline=tmp_path / "cmdline")
    return Case(backend, backend.variables, {"order": "B A", "B_left": "1", "B_pending": "1"},
                {"B_left": "3", "B_pending": "0"}, {"B_left": "0", "B_pending": "0"})


CASES = {
    "grub": grub_case,
    "uboot": lambda tmp_path: uboot_case(tmp_path, 1),
    "uboot-redundant": lambda tmp_path: uboot_case(tmp_path, 2),
    "custom": custom_case,
    "file": file_case,
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    return CASES[request.param](tmp_path)


def subset(variables: dict[str, str], expected: dict[str, str]) -> dict[str, str]:
    return {name: variables.get(name) for name in expected}


def test_contract_initial_state(case: Case) -> None:
    assert isinstance(case.backend, Bootloader)
    assert case.backend.get_primary() == "A"
    assert case.backend.get_state("A") and case.backend.get_state("B")


def test_contract_set_primary_gives_one_try(case: Case) -> None:
    case.backend.set_primary("B")
    assert case.backend.get_primary() == "B"
    assert case.backend.get_state("B")
    assert subset(case.raw(), case.one_try_b) == case.one_try_b


def test_contract_mark_good_restores_attempts(case: Case) -> None:
    case.backend.set_primary("B")
    case.backend.set_state("B", True)
    assert case.backend.get_primary() == "B"
    assert case.backend.get_state("B")
    assert subset(case.raw(), case.good_b) == case.good_b


def test_contract_bad_primary_falls_back(case: Case) -> None:
    case.backend.set_primary("B")
    case.backend.set_state("B", False)
    assert not case.backend.get_state("B")
    assert case.backend.get_state("A")
    assert case.backend.get_primary() == "A"
    assert subset(case.raw(), case.bad_b) == case.bad_b


def test_contract_set_primary_revives_a_bad_slot(case: Case) -> None:
    case.backend.set_state("B", False)
    case.backend.set_primary("B")
    assert case.backend.get_primary() == "B"
    assert subset(case.raw(), case.one_try_b) == case.one_try_b


def test_contract_bad_first_slot_and_no_slot_at_all(case: Case) -> None:
    case.backend.set_state("A", False)
    assert case.backend.get_primary() == "B"
    case.backend.set_state("B", False)
    assert case.backend.get_primary() is None


def test_contract_variables_are_strings(case: Case) -> None:
    variables = case.backend.variables()
    assert variables
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in variables.items())


@pytest.mark.parametrize("slot", ["C", "a", "", "A B"])
def test_contract_unknown_slot_is_refused_before_any_write(case: Case, slot: str) -> None:
    before = case.raw()
    for call in (lambda: case.backend.set_primary(slot), lambda: case.backend.set_state(slot, True),
                 lambda: case.backend.get_state(slot)):
        with pytest.raises(UsageError, match="unknown slot"):
            call()
    assert case.raw() == before


# --- registry ----------------------------------------------------------------


def test_registry_names_and_unknown_name() -> None:
    assert registry.names()[:4] == ["grub", "uboot", "custom", "file"]
    with pytest.raises(ConfigError, match="unknown bootloader 'lilo'; known: grub, uboot, custom, file"):
        registry.create("lilo")


def test_registry_bad_option_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bootloader 'file'.*colour"):
        registry.create("file", path=tmp_path / "x.json", colour="red")


def test_registry_imports_backends_lazily() -> None:
    code = ("import sys; import bootloader_bridge.bootchooser.registry as r; "
            "r.create('file', path='/nonexistent/state.json'); "
            "print(sorted(m for m in sys.modules if m.startswith('bootloader_bridge.bootchooser.')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    loaded = eval(out)  # a printed list of module names
    assert "bootloader_bridge.bootchooser.file" in loaded
    assert not {"grub", "uboot", "custom"} & {name.rsplit(".", 1)[1] for name in loaded}


def test_registry_entry_point_plugins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    group = registry.ENTRY_POINT_GROUP
    plugins = [EntryPoint("devboard", "bootloader_bridge.bootchooser.file:FileBootloader", group),
               EntryPoint("grub", "builtins:dict", group),
               EntryPoint("notabootloader", "builtins:dict", group),
               EntryPoint("broken", "fwagent_no_such_module:Backend", group)]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [p for p in plugins if p.group == group])
    assert registry.names() == ["grub", "uboot", "custom", "file", "broken", "devboard", "notabootloader"]
    assert isinstance(registry.create("devboard", path=tmp_path / "s.json"), FileBootloader)
    assert registry.backend_class("grub").__name__ == "GrubBootloader"
    with pytest.raises(ConfigError, match="does not implement the protocol"):
        registry.create("notabootloader")
    with pytest.raises(ConfigError, match="'broken'.*cannot be loaded"):
        registry.create("broken")


# --- GRUB --------------------------------------------------------------------


def logging_wrapper(tmp_path: Path, tool: str) -> tuple[Path, Path]:
    """A script that logs each call's arguments (and a -s script's content), then runs the tool."""
    log = tmp_path / f"{tool}.log"
    wrapper = executable(tmp_path / f"{tool}-logged", f"""#!/bin/sh
echo "$*" >> {log}
prev=""
for arg in "$@"; do [ "$prev" = "-s" ] && sed 's/^/  /' "$arg" >> {log}; prev="$arg"; done
exec {require_tool(tool)} "$@"
""")
    return wrapper, log


def test_grub_rauc_values_exactly(tmp_path: Path) -> None:
    path = rauc_grubenv(tmp_path)
    grub = registry.create("grub", env_file=path)
    grub.set_primary("B")
    assert grubenv.decode(path.read_bytes()) == RAUC_GRUB | {"ORDER": "B A"}
    grub_editenv(path, "set", "B_TRY=1")  # what the boot script does when it boots B
    assert grub.get_primary() == "B" and grub.get_state("B")  # RAUC: TRY is the boot script's business
    grub.set_state("B", True)
    assert grubenv.decode(path.read_bytes()) == RAUC_GRUB | {"ORDER": "B A"}
    grub.set_state("A", False)
    assert grubenv.decode(path.read_bytes()) == RAUC_GRUB | {"ORDER": "B A", "A_OK": "0"}
    grub.set_primary("A")
    assert grubenv.decode(path.read_bytes()) == RAUC_GRUB
    assert grub.variables() == RAUC_GRUB


def test_grub_each_change_is_one_grub_editenv_call(tmp_path: Path) -> None:
    path = rauc_grubenv(tmp_path)
    wrapper, log = logging_wrapper(tmp_path, "grub-editenv")
    grub = registry.create("grub", env_file=path, tool=str(wrapper))
    grub.set_primary("B")
    grub.set_state("A", False)
    writes = [line for line in log.read_text().splitlines() if " set " in line]
    assert writes == [f"{path} set ORDER=B A B_OK=1 B_TRY=0", f"{path} set A_OK=0 A_TRY=0"]


def test_grub_missing_file_is_not_created(tmp_path: Path) -> None:
    require_tool("grub-editenv")
    grub = registry.create("grub", env_file=tmp_path / "grubenv")
    for call in (grub.get_primary, lambda: grub.set_primary("B"), grub.variables):
        with pytest.raises(BootloaderError, match="does not exist"):
            call()
    assert not (tmp_path / "grubenv").exists()


def test_grub_invalid_block_is_corrupt(tmp_path: Path) -> None:
    require_tool("grub-editenv")
    path = tmp_path / "grubenv"
    path.write_bytes(b"x" * 1024)
    with pytest.raises(BootEnvCorruptError, match="invalid environment block"):
        registry.create("grub", env_file=path).set_primary("B")
    assert path.read_bytes() == b"x" * 1024


@pytest.mark.parametrize("change, message", [(("unset", "ORDER"), "no ORDER"),
                                             (("set", "ORDER=A C"), "not a boot order"),
                                             (("set", "A_OK=yes"), "A_OK='yes'"),
                                             (("unset", "A_OK"), "no A_OK")])
def test_grub_missing_or_malformed_variables_are_corrupt(tmp_path: Path, change: tuple[str, ...],
                                                         message: str) -> None:
    path = rauc_grubenv(tmp_path)
    grub_editenv(path, *change)
    with pytest.raises(BootEnvCorruptError, match=message):
        registry.create("grub", env_file=path).get_primary()


@pytest.mark.parametrize("change", [("unset", "ORDER"), ("set", "ORDER=B B")])
def test_grub_no_write_without_a_valid_order(tmp_path: Path, change: tuple[str, ...]) -> None:
    path = rauc_grubenv(tmp_path)
    grub_editenv(path, *change)
    before = path.read_bytes()
    grub = registry.create("grub", env_file=path)
    for call in (lambda: grub.set_primary("B"), lambda: grub.set_state("B", True)):
        with pytest.raises(BootEnvCorruptError):
            call()
    assert path.read_bytes() == before


def test_grub_slow_tool_times_out(tmp_path: Path) -> None:
    path = rauc_grubenv(tmp_path)
    slow = executable(tmp_path / "slow-editenv", "#!/bin/sh\nsleep 30\n")
    start = time.monotonic()
    with pytest.raises(BootloaderTimeoutError, match="slow-editenv .* did not finish within 1 s"):
        registry.create("grub", env_file=path, tool=str(slow), timeout=1).get_primary()
    assert time.monotonic() - start < 5


# --- U-Boot ------------------------------------------------------------------


def flip_byte(path: Path, offset: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))
    return bytes(data)


def test_uboot_corrupted_env_is_refused_and_not_rewritten(tmp_path: Path) -> None:
    config, (image,) = file_backed_uboot(tmp_path, RAUC_UBOOT)
    corrupted = flip_byte(image, 6)
    uboot = registry.create("uboot", config=config)
    calls = [uboot.get_primary, lambda: uboot.get_state("A"), lambda: uboot.set_primary("B"),
             lambda: uboot.set_state("A", True), uboot.variables]
    for call in calls:
        with pytest.raises(BootEnvCorruptError) as err:
            call()
        assert "fw_printenv" in str(err.value) and "\n" not in str(err.value)
    assert image.read_bytes() == corrupted


def test_uboot_default_environment_fallback_is_corrupt(tmp_path: Path) -> None:
    """Given a default environment, fw_printenv prints it and exits 0 -- still a corrupt environment."""
    config, (image,) = file_backed_uboot(tmp_path, RAUC_UBOOT)
    corrupted = flip_byte(image, 6)
    defaults = tmp_path / "u-boot-initial-env"
    defaults.write_text("BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n")
    wrapper = executable(tmp_path / "printenv-with-defaults",
                         f"#!/bin/sh\nexec {require_tool('fw_printenv')} -f {defaults} \"$@\"\n")
    uboot = registry.create("uboot", config=config, printenv=str(wrapper))
    with pytest.raises(BootEnvCorruptError, match="using default"):
        uboot.set_primary("B")
    assert image.read_bytes() == corrupted


@pytest.mark.parametrize("variables, message", [
    ({"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3"}, "lacks BOOT_B_LEFT"),
    ({"BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}, "lacks BOOT_ORDER"),
    (RAUC_UBOOT | {"BOOT_B_LEFT": "0x3"}, "BOOT_B_LEFT='0x3'"),
    (RAUC_UBOOT | {"BOOT_ORDER": "A A"}, "not a boot order"),
])
def test_uboot_missing_or_malformed_variables_are_corrupt(tmp_path: Path, variables: dict[str, str],
                                                          message: str) -> None:
    config, (image,) = file_backed_uboot(tmp_path, variables)
    before = image.read_bytes()
    uboot = registry.create("uboot", config=config)
    for call in (uboot.get_primary, lambda: uboot.set_primary("B"), lambda: uboot.set_state("B", True)):
        with pytest.raises(BootEnvCorruptError, match=message):
            call()
    assert image.read_bytes() == before


def test_uboot_single_copy_writes_left_before_order(tmp_path: Path) -> None:
    config, _ = file_backed_uboot(tmp_path, RAUC_UBOOT)
    wrapper, log = logging_wrapper(tmp_path, "fw_setenv")
    uboot = registry.create("uboot", config=config, setenv=str(wrapper))
    assert not uboot.atomic_write
    uboot.set_primary("B")
    assert re.sub(r"-s \S+", "-s SCRIPT", log.read_text()).splitlines() == [
        f"-c {config} -s SCRIPT", "  BOOT_B_LEFT=1", f"-c {config} -s SCRIPT", "  BOOT_ORDER=B A"]


def test_uboot_redundant_copies_take_one_write(tmp_path: Path) -> None:
    config, _ = file_backed_uboot(tmp_path, RAUC_UBOOT, copies=2)
    wrapper, log = logging_wrapper(tmp_path, "fw_setenv")
    uboot = registry.create("uboot", config=config, setenv=str(wrapper))
    assert uboot.atomic_write
    uboot.set_primary("B")
    assert re.sub(r"-s \S+", "-s SCRIPT", log.read_text()).splitlines() == [
        f"-c {config} -s SCRIPT", "  BOOT_B_LEFT=1", "  BOOT_ORDER=B A"]


def test_uboot_boot_script_decrement_then_fallback(tmp_path: Path) -> None:
    """What the reference boot script does to the variables: the unconfirmed try is used once."""
    config, _ = file_backed_uboot(tmp_path, RAUC_UBOOT)
    uboot = registry.create("uboot", config=config)
    uboot.set_primary("B")
    boot_b = tmp_path / "boot-b.txt"
    boot_b.write_text("BOOT_B_LEFT=0\n")  # U-Boot booted B: 1 - 1
    subprocess.run([require_tool("fw_setenv"), "-c", str(config), "-s", str(boot_b)], check=True)
    assert not uboot.get_state("B")
    assert uboot.get_primary() == "A"


def test_uboot_attempts_option(tmp_path: Path) -> None:
    config, _ = file_backed_uboot(tmp_path, RAUC_UBOOT)
    uboot = registry.create("uboot", config=config, attempts=5)
    uboot.set_state("A", True)
    assert uboot.variables()["BOOT_A_LEFT"] == "5"
    for attempts in (0, 10):
        with pytest.raises(ConfigError, match="1 to 9"):
            registry.create("uboot", config=config, attempts=attempts)


def test_uboot_unstored_write_is_detected(tmp_path: Path) -> None:
    config, _ = file_backed_uboot(tmp_path, RAUC_UBOOT)
    ignoring = executable(tmp_path / "ignoring-setenv", "#!/bin/sh\nexit 0\n")
    with pytest.raises(BootloaderError, match="did not store"):
        registry.create("uboot", config=config, setenv=str(ignoring)).set_state("B", False)


def test_uboot_missing_config_is_a_tool_failure_not_corruption(tmp_path: Path) -> None:
    require_tool("fw_printenv")
    with pytest.raises(BootloaderError, match=r"fw_printenv -c \S+/fw_env.config failed") as err:
        registry.create("uboot", config=tmp_path / "fw_env.config").set_primary("B")
    assert not isinstance(err.value, BootEnvCorruptError)


# --- custom script -------------------------------------------------------------


def test_custom_get_current_and_variables(tmp_path: Path) -> None:
    custom = registry.create("custom", script=executable(tmp_path / "boot.sh", CUSTOM_SCRIPT))
    assert custom.get_current() == "A"
    custom.set_state("B", False)
    assert custom.variables() == {"primary": "A", "A_state": "good", "B_state": "bad", "current": "A"}


def test_custom_hanging_script_times_out_fast(tmp_path: Path) -> None:
    script = executable(tmp_path / "hang.sh", "#!/bin/sh\necho thinking >&2\nsleep 30\n")
    custom = registry.create("custom", script=script, timeout=1)
    start = time.monotonic()
    with pytest.raises(BootloaderTimeoutError) as err:
        custom.set_primary("B")
    assert time.monotonic() - start < 5
    assert isinstance(err.value, TimeoutError) and err.value.code == "bootloader-timeout"
    assert "hang.sh set-primary B did not finish within 1 s: thinking" in str(err.value)


def test_custom_failure_carries_stderr(tmp_path: Path) -> None:
    script = executable(tmp_path / "fail.sh", "#!/bin/sh\necho 'env locked' >&2\necho 'try later' >&2\nexit 3\n")
    with pytest.raises(BootloaderError, match=r"fail.sh set-state A good failed with exit status 3: "
                                              r"env locked \| try later$"):
        registry.create("custom", script=script).set_state("A", True)


@pytest.mark.parametrize("output", ["C", "maybe"])
def test_custom_unexpected_output(tmp_path: Path, output: str) -> None:
    custom = registry.create("custom", script=executable(tmp_path / "odd.sh", f"#!/bin/sh\necho {output}\n"))
    with pytest.raises(BootloaderError, match=f"printed '{output}'"):
        custom.get_primary()
    with pytest.raises(BootloaderError, match=f"printed '{output}'"):
        custom.get_state("A")


def test_custom_missing_script(tmp_path: Path) -> None:
    with pytest.raises(BootloaderError, match="cannot run"):
        registry.create("custom", script=tmp_path / "nothing.sh").get_primary()


# --- file bootloader -------------------------------------------------------------


@pytest.fixture
def board(tmp_path: Path) -> FileBootloader:
    return FileBootloader(tmp_path / "bootloader.json", cmdline=tmp_path / "cmdline")


def test_file_boot_good_slot_keeps_its_tries(board: FileBootloader) -> None:
    assert [board.boot() for _ in range(5)] == ["A"] * 5
    assert board.variables()["A_left"] == "3"
    assert cmdline.read_booted_slot(board.cmdline) == "A"


def test_file_boot_unconfirmed_try_falls_back(board: FileBootloader) -> None:
    board.set_primary("B")
    assert board.boot() == "B"
    assert board.variables() == {"order": "B A", "A_left": "3", "A_pending": "0",
                                "B_left": "0", "B_pending": "1"}
    assert cmdline.read_booted_slot(board.cmdline) == "B"
    assert board.boot() == "A"
    assert cmdline.read_booted_slot(board.cmdline) == "A"
    assert board.get_primary() == "A" and not board.get_state("B")


def test_file_boot_confirmed_try_stays(board: FileBootloader) -> None:
    board.set_primary("B")
    assert board.boot() == "B"
    board.set_state("B", True)
    assert [board.boot() for _ in range(3)] == ["B"] * 3
    assert board.variables()["B_left"] == "3"


def test_file_boot_with_nothing_bootable_raises(board: FileBootloader) -> None:
    board.set_state("A", False)
    board.set_state("B", False)
    with pytest.raises(BootloaderError, match="no slot has boot tries left"):
        board.boot()


def test_file_state_is_written_atomically_and_read_strictly(board: FileBootloader) -> None:
    assert not board.path.exists()
    board.get_primary()
    assert not board.path.exists()  # reading does not create the state
    board.set_primary("B")
    assert sorted(p.name for p in board.path.parent.iterdir()) == ["bootloader.json"]
    board.path.write_text('{"order": ["A", "B"], "slots": {"A": {"left": 3, "pending": false}}}')
    with pytest.raises(BootEnvCorruptError, match="does not hold a bootloader state"):
        board.get_primary()
    board.path.write_text("{not json")
    with pytest.raises(BootEnvCorruptError):
        board.boot()


# --- kernel command line -----------------------------------------------------------


@pytest.mark.parametrize("text, slot", [
    ("root=PARTLABEL=rootfs_B ro fwagent.slot=B\n", "B"),
    ("console=ttyS0 rauc.slot=A quiet", "A"),
    ("rauc.slot=B fwagent.slot=B", "B"),
    ('root=/dev/sda2 init="/sbin/init --x" fwagent.slot=A', "A"),
    ("root=/dev/sda2 ro quiet", None),
    ("myfwagent.slot=A", None),
    ("", None),
])
def test_cmdline_booted_slot(text: str, slot: str | None) -> None:
    assert cmdline.booted_slot(text) == slot


@pytest.mark.parametrize("text, message", [
    ("fwagent.slot=", "fwagent.slot must be one of A, B"),
    ("fwagent.slot=C", "'fwagent.slot=C'"),
    ("fwagent.slot", "must be one of"),
    ("rauc.slot=A fwagent.slot=B", "more than one slot: A, B"),
    ('fwagent.slot=A init="/sbin/init', "cannot be split"),
])
def test_cmdline_malformed(text: str, message: str) -> None:
    with pytest.raises(BootEnvCorruptError, match=message):
        cmdline.booted_slot(text)


def test_cmdline_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(BootloaderError, match="cannot read the kernel command line"):
        cmdline.read_booted_slot(tmp_path / "missing")


# --- reference boot scripts in docs/bootloaders.md -------------------------------


def fenced_block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(blocks) == 1, f"docs/bootloaders.md must hold one ```{language} block"
    return blocks[0]


def test_reference_grub_cfg_is_valid_grub_script(tmp_path: Path) -> None:
    script = tmp_path / "grub.cfg"
    script.write_text(fenced_block("grub"))
    result = subprocess.run([require_tool("grub-script-check"), str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
