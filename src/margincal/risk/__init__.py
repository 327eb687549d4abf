"""margincal.risk."""
