"""Things: microcontrollers on a gateway's serial lines, and the bootloaders that flash them."""
