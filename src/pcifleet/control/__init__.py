"""pcifleet.control."""
