"""margincal.stress."""
