"""Everything that talks to a bootloader: A/B boot environments and the serial bootloaders of MCUs."""
