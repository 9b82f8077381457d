"""Microcontrollers on the bench: real MCUboot and Zephyr firmware, and the QEMU MCU board."""
