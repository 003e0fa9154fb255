"""pcifleet.host."""
