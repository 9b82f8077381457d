"""Pure codecs of boot environments: bytes in, variables out, and back. No I/O."""
