"""Servers the agent talks to, for tests, the bench and the demo."""
