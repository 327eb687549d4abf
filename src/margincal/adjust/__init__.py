"""margincal.adjust."""
