"""Return primitives on stored bars: close-to-close log returns."""

from __future__ import annotations

import numpy as np
import pandas as pd


def log_returns(bars: pd.DataFrame, instrument: str | None = None) -> pd.Series:
    """Close-to-close log returns of ``bars`` (the first bar has none), labelled by the later bar."""
    r = np.log(bars["close"]).diff().iloc[1:]
    r.name = instrument or "returns"
    return r


__all__ = ["log_returns"]
