"""fwagent's labgrid layer: a QEMU gateway driver, the gateway strategy, and the device as the
update scenarios see it. Loaded by the bench (hil/bench), never by the agent."""
