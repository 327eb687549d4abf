"""margincal.pricing."""
