"""margincal.distributed."""
