"""Simulated Thing bootloaders on pseudo-terminals, each a pure state machine (bytes in, replies
out) behind a thin pty adapter, checked against independent reference clients."""
