"""margincal.vol."""
