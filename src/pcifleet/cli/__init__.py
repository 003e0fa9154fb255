"""pcifleet.cli."""
