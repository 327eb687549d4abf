"""margincal.distributed: the heavy kernels on dask.distributed, or in this process.

Public API::

    from margincal.distributed import DaskEngine, LocalEngine, make_engine
    from margincal.data.book import generate_book, open_book

    book = generate_book(1_000_000, out_dir="book/", seed=1)            # partitioned Parquet
    with DaskEngine(workers=2) as eng:                                  # or scheduler="tcp://HOST:8786"
        res = eng.portfolio_margin(book, out="margin/")                 # BookMarginResult (totals, top)
        st = eng.stress(book, hypothetical_scenarios(), margin=0.10)    # BookStressSummary
        fc = eng.monte_carlo(model, n_paths=4_000_000, chunks=16)       # TailForecast
        bt = eng.backtests(load_returns(), models=["fhs"])              # BacktestResult

``LocalEngine`` has the same methods and runs every task here; results agree
to floating-point rounding (see docs/scaling.md).
"""

from margincal.distributed.engine import ENGINES, DaskEngine, Engine, LocalEngine, make_engine
from margincal.distributed.portfolio import BookMarginResult, book_market, book_portfolio_margin, book_specs
from margincal.distributed.stress import BookStressSummary, book_stress, stress_instruments

__all__ = [
    "ENGINES",
    "BookMarginResult",
    "BookStressSummary",
    "DaskEngine",
    "Engine",
    "LocalEngine",
    "book_market",
    "book_portfolio_margin",
    "book_specs",
    "book_stress",
    "make_engine",
    "stress_instruments",
]
