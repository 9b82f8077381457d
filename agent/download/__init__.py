"""Downloads that survive bad links and power cuts: resume, retry, verify (docs/download.md)."""
