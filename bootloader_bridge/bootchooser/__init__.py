"""A/B boot selection: one protocol, one backend per bootloader (GRUB, U-Boot, a script, a file).

Backends are created by name through :func:`bootloader_bridge.bootchooser.registry.create`.
"""
