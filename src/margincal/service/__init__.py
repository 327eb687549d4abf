"""margincal.service."""
