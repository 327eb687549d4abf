"""margincal.margin."""
