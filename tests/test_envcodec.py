"""The boot environment codecs, byte for byte against what the real tools write."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import BootEnvCorruptError, BootloaderError
from bootloader_bridge.envcodec import grubenv, ubootenv
from bootloader_bridge.envcodec.listing import parse_listing
from conftest import require_tool

RAUC_GRUB = {"ORDER": "A B", "A_OK": "1", "B_OK": "1", "A_TRY": "0", "B_TRY": "0"}
RAUC_UBOOT = {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
ENV_SIZE = 0x4000


# --- GRUB environment block -------------------------------------------------


def grub_editenv(path: Path, *args: str) -> None:
    subprocess.run([require_tool("grub-editenv"), str(path), *args], check=True, capture_output=True)


@pytest.fixture
def grubenv_file(tmp_path: Path) -> Path:
    path = tmp_path / "grubenv"
    grub_editenv(path, "create")
    return path


def test_grub_empty_block_is_what_grub_editenv_creates(grubenv_file: Path) -> None:
    assert grubenv.encode({}) == grubenv_file.read_bytes()
    assert grubenv.decode(grubenv_file.read_bytes()) == {}


def test_grub_rauc_variables_byte_for_byte(grubenv_file: Path) -> None:
    grub_editenv(grubenv_file, "set", *(f"{k}={v}" for k, v in RAUC_GRUB.items()))
    block = grubenv_file.read_bytes()
    assert len(block) == grubenv.BLOCK_SIZE
    assert grubenv.encode(RAUC_GRUB) == block
    assert grubenv.decode(block) == RAUC_GRUB


def test_grub_set_again_keeps_place_and_unset_closes_gap(grubenv_file: Path) -> None:
    grub_editenv(grubenv_file, "set", *(f"{k}={v}" for k, v in RAUC_GRUB.items()))
    grub_editenv(grubenv_file, "set", "A_TRY=1", "ORDER=B A")
    expected = RAUC_GRUB | {"A_TRY": "1", "ORDER": "B A"}
    assert list(grubenv.decode(grubenv_file.read_bytes()).items()) == list(expected.items())
    assert grubenv.encode(expected) == grubenv_file.read_bytes()
    grub_editenv(grubenv_file, "unset", "B_OK")
    del expected["B_OK"]
    assert grubenv.encode(expected) == grubenv_file.read_bytes()


def test_grub_escapes_backslash_and_newline(grubenv_file: Path) -> None:
    values = {"path": "C:\\dir\\", "two": "line one\nline two", "eq": "a=b"}
    grub_editenv(grubenv_file, "set", *(f"{k}={v}" for k, v in values.items()))
    block = grubenv_file.read_bytes()
    assert b"path=C:\\\\dir\\\\\n" in block and b"two=line one\\\nline two\n" in block
    assert grubenv.encode(values) == block
    assert grubenv.decode(block) == values


def test_grub_listing_matches_decode(grubenv_file: Path) -> None:
    grub_editenv(grubenv_file, "set", *(f"{k}={v}" for k, v in RAUC_GRUB.items()))
    listing = subprocess.run([require_tool("grub-editenv"), str(grubenv_file), "list"],
                             check=True, capture_output=True, text=True).stdout
    assert parse_listing(listing) == grubenv.decode(grubenv_file.read_bytes())


@pytest.mark.parametrize("size", [0, 1023, 1025, 2048])
def test_grub_wrong_size_is_corrupt(size: int) -> None:
    block = (grubenv.encode(RAUC_GRUB) + b"#" * 1024)[:size]
    with pytest.raises(BootEnvCorruptError, match="bytes, not 1024"):
        grubenv.decode(block)


def test_grub_wrong_signature_is_corrupt() -> None:
    block = b"# GRUB Environment Blocc" + grubenv.encode(RAUC_GRUB)[24:]
    with pytest.raises(BootEnvCorruptError, match="signature"):
        grubenv.decode(block)


def test_grub_line_without_value_is_corrupt() -> None:
    block = grubenv.encode({"A_OK": "1"}).replace(b"A_OK=1\n", b"A_OK 1\n")
    with pytest.raises(BootEnvCorruptError) as err:
        grubenv.decode(block)
    assert isinstance(err.value, ValueError) and err.value.code == "bootenv-corrupt"


def test_grub_overflow_and_bad_names_are_refused() -> None:
    with pytest.raises(BootloaderError, match="1024"):
        grubenv.encode({"big": "x" * 1000})
    for name in ("", "a=b", "#comment", "two\nlines"):
        with pytest.raises(BootloaderError):
            grubenv.encode({name: "1"})


_names = st.text(st.characters(codec="utf-8", exclude_characters="=\n"), min_size=1, max_size=8).filter(
    lambda name: not name.startswith("#"))


@given(st.dictionaries(_names, st.text(st.characters(codec="utf-8"), max_size=20), max_size=8))
def test_grub_round_trip(variables: dict[str, str]) -> None:
    assert grubenv.decode(grubenv.encode(variables)) == variables


# --- U-Boot environment image -----------------------------------------------


def fw_env_config(tmp_path: Path, copies: int) -> tuple[Path, list[Path]]:
    """A fw_env.config naming ``copies`` file-backed environment copies."""
    images = [tmp_path / f"env{index}.bin" for index in range(copies)]
    config = tmp_path / "fw_env.config"
    config.write_text("".join(f"{image} 0x0 {ENV_SIZE:#x}\n" for image in images))
    return config, images


def fw_setenv(config: Path, tmp_path: Path, variables: dict[str, str]) -> None:
    script = tmp_path / "setenv.txt"
    script.write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
    subprocess.run([require_tool("fw_setenv"), "-c", str(config), "-s", str(script)],
                   check=True, capture_output=True)


def fw_printenv(config: Path) -> dict[str, str]:
    listing = subprocess.run([require_tool("fw_printenv"), "-c", str(config)],
                             check=True, capture_output=True, text=True).stdout
    return parse_listing(listing)


def test_uboot_fw_printenv_reads_our_image(tmp_path: Path) -> None:
    config, (image,) = fw_env_config(tmp_path, 1)
    image.write_bytes(ubootenv.encode(RAUC_UBOOT, ENV_SIZE))
    assert fw_printenv(config) == RAUC_UBOOT


def used_part(image: bytes, header: int) -> bytes:
    """Header and entries up to the double NUL: the bytes every writer must agree on.

    libubootenv 0.3 writes its data area from a buffer it does not clear
    entirely, so the padding after the entries may hold stray bytes (with
    the CRC computed over them); only the part before is compared.
    """
    end = image.index(b"\0\0", header) + 2
    return image[4:end]


def test_uboot_single_image_byte_for_byte(tmp_path: Path) -> None:
    config, (image,) = fw_env_config(tmp_path, 1)
    image.write_bytes(ubootenv.encode({"bootdelay": "2"}, ENV_SIZE))
    fw_setenv(config, tmp_path, RAUC_UBOOT | {"bootcmd": "run fwagent_boot; reset"})
    written = image.read_bytes()
    expected = RAUC_UBOOT | {"bootcmd": "run fwagent_boot; reset", "bootdelay": "2"}
    assert len(written) == ENV_SIZE
    assert used_part(written, 4) == used_part(ubootenv.encode(expected, ENV_SIZE), 4)
    assert ubootenv.decode(written) == ubootenv.EnvImage(expected, None)


def test_uboot_redundant_images_byte_for_byte(tmp_path: Path) -> None:
    config, images = fw_env_config(tmp_path, 2)
    for image in images:
        image.write_bytes(ubootenv.encode(RAUC_UBOOT, ENV_SIZE, flag=1))
    fw_setenv(config, tmp_path, {"BOOT_B_LEFT": "1"})
    fw_setenv(config, tmp_path, {"BOOT_ORDER": "B A"})
    first = RAUC_UBOOT | {"BOOT_B_LEFT": "1"}
    second = first | {"BOOT_ORDER": "B A"}
    copies = sorted((image.read_bytes() for image in images), key=lambda raw: raw[4])
    assert [used_part(copy, 5) for copy in copies] == [
        used_part(ubootenv.encode(first, ENV_SIZE, flag=2), 5),
        used_part(ubootenv.encode(second, ENV_SIZE, flag=3), 5)]
    assert [ubootenv.decode(copy, redundant=True) for copy in copies] == [
        ubootenv.EnvImage(first, 2), ubootenv.EnvImage(second, 3)]
    assert fw_printenv(config) == second


def test_uboot_empty_environment_round_trip() -> None:
    image = ubootenv.encode({}, 64)
    assert image[4:6] == b"\0\0"
    assert ubootenv.decode(image) == ubootenv.EnvImage({}, None)


def test_uboot_padding_need_not_be_nul() -> None:
    data = b"b=2\0a=1\0\0" + b"\xff" * 55
    image = struct.pack("<I", zlib.crc32(data)) + data
    assert ubootenv.decode(image).variables == {"b": "2", "a": "1"}


def test_uboot_crc_mismatch_is_corrupt() -> None:
    image = bytearray(ubootenv.encode(RAUC_UBOOT, ENV_SIZE))
    image[10] ^= 0x01
    with pytest.raises(BootEnvCorruptError, match="CRC mismatch"):
        ubootenv.decode(bytes(image))


def test_uboot_redundant_flag_is_not_data() -> None:
    image = ubootenv.encode(RAUC_UBOOT, 256, flag=7)
    assert ubootenv.decode(image, redundant=True) == ubootenv.EnvImage(RAUC_UBOOT, 7)
    with pytest.raises(BootEnvCorruptError):
        ubootenv.decode(image, redundant=False)


@pytest.mark.parametrize("data", [b"a=1\0b=2" + b"\x01" * 8, b"a=1\0noequals\0\0\0"],
                         ids=["no-double-nul", "entry-without-equals"])
def test_uboot_malformed_data_with_valid_crc_is_corrupt(data: bytes) -> None:
    with pytest.raises(BootEnvCorruptError):
        ubootenv.decode(struct.pack("<I", zlib.crc32(data)) + data)


def test_uboot_overflow_and_bad_variables_are_refused() -> None:
    with pytest.raises(BootloaderError, match="needs"):
        ubootenv.encode({"big": "x" * 100}, 64)
    for name, value in (("", "1"), ("a=b", "1"), ("a", "nul\0")):
        with pytest.raises(BootloaderError):
            ubootenv.encode({name: value}, 64)


_uboot_names = st.text(st.characters(codec="utf-8", exclude_characters="=\0"), min_size=1, max_size=8)


@given(st.dictionaries(_uboot_names, st.text(st.characters(codec="utf-8", exclude_characters="\0"),
                                             max_size=20), max_size=8),
       st.one_of(st.none(), st.integers(0, 255)))
def test_uboot_round_trip(variables: dict[str, str], flag: int | None) -> None:
    image = ubootenv.encode(variables, 1024, flag=flag)
    assert len(image) == 1024
    assert ubootenv.decode(image, redundant=flag is not None) == ubootenv.EnvImage(variables, flag)


# --- tool listings ----------------------------------------------------------


def test_listing_keeps_order_equals_in_values_and_continued_lines() -> None:
    assert parse_listing("B=2\nA=x=y\nM=one\ntwo\n") == {"B": "2", "A": "x=y", "M": "one\ntwo"}
