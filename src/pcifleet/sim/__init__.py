"""pcifleet.sim."""
