"""margincal.data."""
