"""The pure, typed domain core: no I/O, no configuration globals."""
