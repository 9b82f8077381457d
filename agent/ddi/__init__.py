"""The device side of hawkBit's Direct Device Integration API (DDI v1)."""
