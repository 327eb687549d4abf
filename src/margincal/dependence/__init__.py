"""margincal.dependence."""
