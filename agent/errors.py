"""The one exception tree of fwagent.

Every error carries a stable ``code`` (kebab-case) that scripts, reports and
logs can rely on. A leaf also subclasses the builtin it is a kind of
(``ValueError`` for malformed input, ``PermissionError`` for a refused
manifest, ``FileNotFoundError`` ...), so callers that only know the builtins
still catch it. ``str(err)`` is one line, fit for ``error: <code>: <detail>``.
"""

from __future__ import annotations


class FwagentError(Exception):
    """Base of every error fwagent raises on purpose."""

    code = "error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code

    @property
    def detail(self) -> str:
        return str(self.args[0]) if self.args else ""

    def one_line(self) -> str:
        """``code: detail`` on one line, a password in a URL shown as ``***``."""
        from agent.log import redact
        return redact(f"{self.code}: {self.detail}".replace("\n", " "))


def code_and_detail(error: BaseException) -> tuple[str, str]:
    """The ``(code, detail)`` an error is reported with, in logs, the journal, the server's
    feedback and on the command line alike: an FwagentError's own; ``io`` with the reason and
    the file for an OSError that no module turned into one; ``internal`` with the type for
    anything else, which is a defect."""
    if isinstance(error, FwagentError):
        return error.code, error.detail
    if isinstance(error, OSError):
        reason = error.strerror or str(error) or type(error).__name__
        return "io", f"{reason} ({error.filename})" if error.filename else reason
    return "internal", f"{type(error).__name__}: {error}"


class UsageError(FwagentError, ValueError):
    """A command line or a file given by the user does not make sense."""

    code = "usage"


class ConfigError(FwagentError, ValueError):
    """A configuration or spec file is invalid; the detail names the key."""

    code = "config"


class InputFileError(FwagentError, FileNotFoundError):
    """A file named by the user cannot be read."""

    code = "file"


# --- manifests -------------------------------------------------------------


class ManifestError(FwagentError):
    """A SUIT envelope was rejected. ``code`` is the rejection reason."""

    code = "manifest"


class CborError(ManifestError, ValueError):
    """Bytes that are not the strict CBOR a manifest must be."""

    code = "cbor-malformed"


class ManifestFormatError(ManifestError, ValueError):
    """Well-formed CBOR that is not a valid SUIT envelope or manifest."""

    code = "manifest-format"


class AuthenticationError(ManifestError, PermissionError):
    """Digest, signature, MAC or trust checks failed."""

    code = "authentication"


class PolicyError(ManifestError, PermissionError):
    """An authentic manifest that this device must not apply (rollback, identity)."""

    code = "policy"


class ProcessingError(ManifestError, RuntimeError):
    """A command sequence failed or cannot be executed."""

    code = "processing"


class KeyFileError(FwagentError, ValueError):
    """A key file is missing, unreadable or of a kind fwagent does not use."""

    code = "key"


# --- bundles ---------------------------------------------------------------


class BundleError(FwagentError, ValueError):
    """An update bundle is malformed, truncated or does not match its manifest."""

    code = "bundle"


# --- delta updates (agent/delta/) -----------------------------------------


class DeltaError(FwagentError, ValueError):
    """A delta index or frame is malformed or does not match what the signed manifest says;
    the device then installs the solid payload."""

    code = "delta"


# --- bootloaders (bootloader_bridge/) --------------------------------------


class BootloaderError(FwagentError, RuntimeError):
    """The bootloader environment cannot be read or changed."""

    code = "bootloader"


class BootEnvCorruptError(BootloaderError, ValueError):
    """A boot environment is unreadable or inconsistent; it is never "repaired" with defaults."""

    code = "bootenv-corrupt"


class BootloaderTimeoutError(BootloaderError, TimeoutError):
    """A bootloader tool or hook did not finish in time."""

    code = "bootloader-timeout"


# --- Things: microcontrollers on serial lines (bootloader_bridge/things/) ---


class ThingError(BootloaderError):
    """A Thing's bootloader refused, went silent or answered nonsense; the detail says which
    Thing, and where (port, address, offset)."""

    code = "thing"


class ThingPortError(ThingError, OSError):
    """The Thing's serial port is missing or cannot be opened."""

    code = "thing-port"


class ThingOfflineError(ThingError, ConnectionError):
    """The Thing was not reached: its port cannot be opened, or not a byte came back from it.
    Nothing was written to it in this session; in a campaign its result is ``offline``."""

    code = "thing-offline"


class ThingTimeoutError(ThingError, TimeoutError):
    """The Thing did not answer in time (no sync, a lost reply)."""

    code = "thing-timeout"


class ThingVerifyError(ThingError, ValueError):
    """What the Thing holds after writing is not the image (read-back or reported hash)."""

    code = "thing-verify"
