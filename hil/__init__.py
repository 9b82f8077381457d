"""The hardware-in-the-loop bench: boards, simulators, the reference server, scenarios."""
