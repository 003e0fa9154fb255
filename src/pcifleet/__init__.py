"""pcifleet: PCI passthrough and SR-IOV device management for a fleet of hosts."""

__version__ = "0.1.0"
