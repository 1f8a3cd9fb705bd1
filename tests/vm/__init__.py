"""QEMU guests for the node tests and the VM lab: a Debian image from Debian packages, guests
on qcow2 overlays with SSH on loopback ports and a private switched network (vde)."""
