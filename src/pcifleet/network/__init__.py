"""pcifleet.network."""
