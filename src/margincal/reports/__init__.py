"""margincal.reports."""
