"""margincal.cli."""
