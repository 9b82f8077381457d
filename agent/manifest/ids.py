"""Vendor and class identifiers (draft-ietf-suit-manifest-37 §8.4.8.2).

vendor-id = UUID5(NAMESPACE_DNS, vendor domain); class-id = UUID5(vendor-id,
class name). A literal UUID must be of version 3, 4 or 5.
"""

from __future__ import annotations

import uuid

from agent.errors import ConfigError


def parse_uuid(text: str, what: str) -> uuid.UUID:
    try:
        value = uuid.UUID(str(text))
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a UUID") from None
    if value.version not in (3, 4, 5):
        raise ConfigError(f"{what}: {value} is a version {value.version} UUID; SUIT requires 3, 4 or 5")
    return value


def vendor_from_domain(domain: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_DNS, domain)


def class_from_name(vendor: uuid.UUID, name: str) -> uuid.UUID:
    return uuid.uuid5(vendor, name)
