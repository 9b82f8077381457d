"""``fwagent demo``: the whole update loop on one machine, and what it runs, shipped with the
package so that it works from an installed wheel: the reference DDI server (``ddi_server``), a
mosquitto broker on loopback (``broker``) and the helpers they share (``local``). The tests and
the bench (hil/) use the same server and broker.

Nothing here is imported by the agent itself; this package imports only the standard library
at import time, so the bench's environment (hil/bench) can import the server too.
"""
