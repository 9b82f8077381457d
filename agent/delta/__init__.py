"""Delta updates over plain HTTP: fetch only the frames of an image the device does not hold.

frames.py is the format (pure), plan.py matches and plans (pure), build.py
writes a release's frames and index, param.py is the manifest parameter that
names them, fetch.py installs on a device, report.py says what it cost. See
docs/delta.md.
"""
