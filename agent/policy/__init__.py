"""Local update control: the ``[policy]`` section's gates (docs/daemon.md, "Local control")."""
