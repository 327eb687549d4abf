"""margincal.backtest."""
