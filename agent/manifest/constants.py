"""SUIT and COSE numbers, as registered by draft-ietf-suit-manifest-37.

Only the current numbering lives here. Key 17 was suit-install in drafts
before -29 (it is 20 now); it has no name in this module on purpose, so that
an old manifest's key 17 is never read as an install sequence.
"""

from __future__ import annotations

# CBOR tags
TAG_ENVELOPE = 107
TAG_MANIFEST = 1070
TAG_COSE_SIGN1 = 18
TAG_COSE_MAC0 = 17
TAG_COSE_SIGN = 98
TAG_COSE_MAC = 97

# Envelope elements
ENV_DELEGATION = 1
ENV_AUTHENTICATION = 2
ENV_MANIFEST = 3
ENV_PAYLOAD_FETCH = 16
ENV_INSTALL = 20
ENV_TEXT = 23

# Manifest elements
M_VERSION = 1
M_SEQUENCE = 2
M_COMMON = 3
M_REFERENCE_URI = 4
M_VALIDATE = 7
M_LOAD = 8
M_INVOKE = 9
M_PAYLOAD_FETCH = 16
M_INSTALL = 20
M_TEXT = 23

SEVERABLE_MEMBERS = {M_PAYLOAD_FETCH: "payload-fetch", M_INSTALL: "install", M_TEXT: "text"}
SEQUENCE_MEMBERS = {M_VALIDATE: "validate", M_LOAD: "load", M_INVOKE: "invoke",
                    M_PAYLOAD_FETCH: "payload-fetch", M_INSTALL: "install"}
MEMBER_NAMES = {M_VERSION: "manifest-version", M_SEQUENCE: "sequence-number", M_COMMON: "common",
                M_REFERENCE_URI: "reference-uri", **SEQUENCE_MEMBERS, M_TEXT: "text"}

# SUIT_Common
C_COMPONENTS = 2
C_SHARED_SEQUENCE = 4

# Commands: conditions
COND_VENDOR_ID = 1
COND_CLASS_ID = 2
COND_IMAGE_MATCH = 3
COND_COMPONENT_SLOT = 5
COND_CHECK_CONTENT = 6
COND_ABORT = 14
COND_DEVICE_ID = 24
# Commands: directives
DIR_SET_COMPONENT_INDEX = 12
DIR_TRY_EACH = 15
DIR_WRITE = 18
DIR_OVERRIDE_PARAMETERS = 20
DIR_FETCH = 21
DIR_COPY = 22
DIR_INVOKE = 23
DIR_SWAP = 31
DIR_RUN_SEQUENCE = 32

CONDITIONS = {COND_VENDOR_ID: "vendor-identifier", COND_CLASS_ID: "class-identifier",
              COND_IMAGE_MATCH: "image-match", COND_COMPONENT_SLOT: "component-slot",
              COND_CHECK_CONTENT: "check-content", COND_ABORT: "abort",
              COND_DEVICE_ID: "device-identifier"}
DIRECTIVES = {DIR_SET_COMPONENT_INDEX: "set-component-index", DIR_TRY_EACH: "try-each",
              DIR_WRITE: "write", DIR_OVERRIDE_PARAMETERS: "override-parameters",
              DIR_FETCH: "fetch", DIR_COPY: "copy", DIR_INVOKE: "invoke", DIR_SWAP: "swap",
              DIR_RUN_SEQUENCE: "run-sequence"}
COMMAND_NAMES = {**CONDITIONS, **DIRECTIVES}
# What the shared sequence may contain (§8.4.5): no side effects.
SHARED_ALLOWED = set(CONDITIONS) | {DIR_SET_COMPONENT_INDEX, DIR_TRY_EACH,
                                    DIR_OVERRIDE_PARAMETERS, DIR_RUN_SEQUENCE}

# Parameters
P_VENDOR_ID = 1
P_CLASS_ID = 2
P_IMAGE_DIGEST = 3
P_COMPONENT_SLOT = 5
P_STRICT_ORDER = 12
P_SOFT_FAILURE = 13
P_IMAGE_SIZE = 14
P_CONTENT = 18
P_URI = 21
P_SOURCE_COMPONENT = 22
P_INVOKE_ARGS = 23
P_DEVICE_ID = 24
P_FETCH_ARGUMENTS = 25
PARAMETER_NAMES = {P_VENDOR_ID: "vendor-id", P_CLASS_ID: "class-id", P_IMAGE_DIGEST: "image-digest",
                   P_COMPONENT_SLOT: "component-slot", P_STRICT_ORDER: "strict-order",
                   P_SOFT_FAILURE: "soft-failure", P_IMAGE_SIZE: "image-size", P_CONTENT: "content",
                   P_URI: "uri", P_SOURCE_COMPONENT: "source-component",
                   P_INVOKE_ARGS: "invoke-args", P_DEVICE_ID: "device-id",
                   P_FETCH_ARGUMENTS: "fetch-arguments"}

# Digest algorithms (COSE)
ALG_SHA256 = -16
DIGEST_ALGORITHMS = {ALG_SHA256: "sha256"}

# COSE signature and MAC algorithms accepted on the device
ALG_ES256 = -7
ALG_ESP256 = -9
ALG_EDDSA = -8
ALG_ED25519 = -19
ALG_HMAC256 = 5
SIGN_ALGORITHMS = {ALG_ES256: "ES256", ALG_ESP256: "ESP256", ALG_EDDSA: "EdDSA",
                   ALG_ED25519: "Ed25519"}
MAC_ALGORITHMS = {ALG_HMAC256: "HMAC-256/256"}
COSE_HEADER_ALG = 1
COSE_HEADER_KID = 4

# SUIT text keys
TEXT_MANIFEST_DESCRIPTION = 1
TEXT_UPDATE_DESCRIPTION = 2
TEXT_COMPONENT_KEYS = {1: "vendor-name", 2: "model-name", 3: "vendor-domain", 4: "model-info",
                       5: "component-description", 6: "component-version"}
