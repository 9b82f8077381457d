"""Every HTTP request fwagent makes: where it may go (policy.py), how it goes (http.py)."""
