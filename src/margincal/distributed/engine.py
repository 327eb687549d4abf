"""Execution engines: :class:`LocalEngine` (this process) and :class:`DaskEngine` (dask.distributed).

Both expose the same methods, so a caller switches by name
(:func:`make_engine`)::

    with make_engine("dask", workers=2) as eng:          # or "local"
        res = eng.portfolio_margin("book/", market, deribit_like())
        st = eng.stress("book/", scenarios, margin=0.10)
        mc = eng.monte_carlo(model, n_paths=1_000_000, chunks=16)
        bt = eng.backtests({"BTC": r_btc, "ETH": r_eth}, models=["fhs"])

Every heavy method splits its work into independent tasks (one per book
partition, block of Monte Carlo paths or instrument), runs them with
:meth:`Engine.map`, and merges the small per-task results in task order, so
the result does not depend on the number of workers or on the order in which
tasks finish. Per-account data stays on the workers (written to Parquet when
asked); only sums, top-k lists and tail order statistics travel back.

:class:`DaskEngine` starts a ``LocalCluster`` (``workers`` processes, one
thread each, a memory limit per worker so that dask spills to disk before the
machine runs out of memory) or connects to a running scheduler
(``scheduler="tcp://HOST:PORT"``). See docs/scaling.md.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from margincal.errors import ConfigError

ProgressFn = Callable[[int], None]


def _apply(fn: Callable[..., Any], item: Any, args: tuple[Any, ...]) -> Any:
    return fn(item, *args)


def _preload() -> None:
    import margincal.distributed.backtest
    import margincal.distributed.montecarlo
    import margincal.distributed.portfolio
    import margincal.distributed.stress  # noqa: F401


class Engine:
    """Base class: the kernel methods, written once on top of :meth:`map`."""

    name = "engine"

    # -- to implement
    def map(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any, progress: ProgressFn | None = None,
            weight: Callable[[Any, Any], int] | None = None) -> list[Any]:
        """``[fn(item, *args) for item in items]``, in item order; ``progress(weight(item, result))`` per task."""
        raise NotImplementedError

    @property
    def n_workers(self) -> int:
        return 1

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "workers": self.n_workers}

    def close(self) -> None:
        """Release resources (a LocalCluster); idempotent."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- kernels (implemented in the sibling modules)
    def portfolio_margin(self, book: Any, market: Any = None, config: Any = None, **kwargs: Any) -> Any:
        """Book-wide portfolio margin: see :func:`margincal.distributed.portfolio.book_portfolio_margin`."""
        from margincal.distributed.portfolio import book_portfolio_margin

        return book_portfolio_margin(self, book, market, config, **kwargs)

    def stress(self, book: Any, scenarios: Sequence[Any], market: Any = None, **kwargs: Any) -> Any:
        """Book-wide stress: see :func:`margincal.distributed.stress.book_stress`."""
        from margincal.distributed.stress import book_stress

        return book_stress(self, book, scenarios, market, **kwargs)

    def monte_carlo(self, model: Any, n_paths: int, chunks: int | None = None, **kwargs: Any) -> Any:
        """Chunked Monte Carlo VaR/ES: see :func:`margincal.distributed.montecarlo.monte_carlo`."""
        from margincal.distributed.montecarlo import monte_carlo

        return monte_carlo(self, model, n_paths, chunks, **kwargs)

    def tail_probability(self, target: Any, threshold: float, n: int, chunks: int | None = None,
                         **kwargs: Any) -> Any:
        """Importance-sampling tail probability: see :func:`margincal.distributed.montecarlo.tail_probability`."""
        from margincal.distributed.montecarlo import tail_probability

        return tail_probability(self, target, threshold, n, chunks, **kwargs)

    def expected_shortfall_is(self, target: Any, level: float, n: int, chunks: int | None = None,
                              **kwargs: Any) -> Any:
        """Importance-sampling VaR/ES: see :func:`margincal.distributed.montecarlo.expected_shortfall_is`."""
        from margincal.distributed.montecarlo import expected_shortfall_is

        return expected_shortfall_is(self, target, level, n, chunks, **kwargs)

    def backtests(self, data: Any, **kwargs: Any) -> Any:
        """Rolling backtests, one task per instrument: see :func:`margincal.distributed.backtest.backtests`."""
        from margincal.distributed.backtest import backtests

        return backtests(self, data, **kwargs)

    def generate_book(self, n_accounts: int, instruments: Sequence[str] | None = None, *, out_dir: Any,
                      progress: ProgressFn | None = None, **kwargs: Any) -> Any:
        """:func:`margincal.data.book.generate_book` with one task per partition (each writes its own file)."""
        from margincal.data.book import generate_book

        def mapper(fn: Callable[..., Any], ks: Sequence[int], *args: Any) -> list[Any]:
            return self.map(fn, ks, *args, progress=progress,
                            weight=lambda _k, p: int(p.n_accounts or 0))

        return generate_book(n_accounts, instruments, out_dir=out_dir, map_partitions=mapper, **kwargs)


class LocalEngine(Engine):
    """Runs every task here, one after the other (the single-process reference path)."""

    name = "local"

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any, progress: ProgressFn | None = None,
            weight: Callable[[Any, Any], int] | None = None) -> list[Any]:
        out = []
        for item in items:
            r = fn(item, *args)
            out.append(r)
            if progress is not None:
                progress(weight(item, r) if weight is not None else 1)
        return out


def _default_memory_limit(workers: int) -> int:
    """Bytes per worker: 80% of the memory available now, shared between the workers."""
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except (ImportError, OSError):  # pragma: no cover - psutil ships with distributed
        avail = 4 * 2**30 * workers
    return max(int(0.8 * avail / max(workers, 1)), 256 * 2**20)


def _parse_bytes(v: Any) -> int:
    if isinstance(v, (int, float)):
        return int(v)
    from dask.utils import parse_bytes

    try:
        return int(parse_bytes(str(v)))
    except (ValueError, TypeError):
        raise ConfigError(f"memory_limit {v!r} is not a size like '4GiB' or a number of bytes") from None


class DaskEngine(Engine):
    """Runs tasks on a dask.distributed cluster: a new ``LocalCluster`` or a running scheduler.

    ``workers``: worker processes of the local cluster (ignored with ``scheduler``).
    ``scheduler``: address of a running scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    ``memory_limit``: per local worker (bytes or ``"6GiB"``; default 80% of the
    available memory divided by ``workers``); dask starts spilling stored task
    results to ``local_directory`` at 60% of it (managed memory) or 70% (process
    memory), pauses the worker at 80% and restarts it at 95% (dask's defaults,
    ``distributed.worker.memory.target/spill/pause/terminate``).
    ``processes=False`` runs the workers as threads of this process (quick to
    start; for tests and small runs). ``preload`` imports margincal's kernels on
    every worker at start (so the first task does not pay for it). ``dashboard=True`` serves dask's dashboard
    on port 8787 (needs bokeh, not a margincal dependency); otherwise the
    scheduler's small HTTP endpoint takes a free port. ``client``: use an existing
    ``distributed.Client`` (not closed on exit).
    """

    name = "dask"

    def __init__(self, *, workers: int = 2, scheduler: str | None = None, threads_per_worker: int = 1,
                 memory_limit: int | str | None = None, processes: bool = True,
                 local_directory: str | None = None, dashboard: bool = False, client: Any = None,
                 preload: bool = True) -> None:
        import distributed  # noqa: F401 - registers the distributed.* config defaults
        from distributed import Client, LocalCluster

        if workers < 1:
            raise ConfigError(f"workers is {workers}; it must be >= 1")
        if threads_per_worker < 1:
            raise ConfigError(f"threads_per_worker is {threads_per_worker}; it must be >= 1")
        self._own_cluster = None
        self._own_client = client is None
        self.scheduler = scheduler
        self.memory_limit: int | None = None
        if client is not None:
            self.client = client
        elif scheduler is not None:
            if not str(scheduler).startswith(("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")):
                raise ConfigError(f"scheduler {scheduler!r}: give an address like tcp://HOST:8786")
            try:
                self.client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        else:
            self.memory_limit = (_default_memory_limit(workers) if memory_limit is None
                                 else _parse_bytes(memory_limit))
            self._tmp = None
            if local_directory is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="margincal-dask-")
                local_directory = self._tmp.name
            import dask

            # dask starts worker processes with MALLOC_TRIM_THRESHOLD_=65536 so that glibc returns freed
            # memory at once; every large temporary of the margin kernel then comes back as fresh pages,
            # which cost ~1.5x the kernel's CPU here (docs/scaling.md). Our tasks free everything they
            # allocate, so the workers keep glibc's default (RSS stays near its peak instead).
            env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
            env.pop("MALLOC_TRIM_THRESHOLD_", None)
            # without the dashboard nobody reads the workers' statistical profiler (10 ms samples): off
            cfg: dict[str, Any] = {"distributed.nanny.pre-spawn-environ": env}
            if not dashboard:
                cfg["distributed.worker.profile.enabled"] = False
            with dask.config.set(cfg):
                self._own_cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=threads_per_worker, processes=processes,
                    memory_limit=self.memory_limit, local_directory=local_directory,
                    dashboard_address=":8787" if dashboard else ":0", silence_logs=40,
                )
            self.client = Client(self._own_cluster)
        self._closed = False
        if preload:
            # import the kernels on every worker now, so the first task does not pay for it
            self.client.run(_preload)

    @property
    def n_workers(self) -> int:
        try:
            return max(len(self.client.scheduler_info(n_workers=-1)["workers"]), 1)
        except (OSError, KeyError, TypeError):  # pragma: no cover
            return 1

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"engine": self.name, "workers": self.n_workers}
        if self.scheduler:
            d["scheduler"] = self.scheduler
        if self.memory_limit:
            d["memory_limit_per_worker"] = self.memory_limit
        return d

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any, progress: ProgressFn | None = None,
            weight: Callable[[Any, Any], int] | None = None) -> list[Any]:
        from distributed import as_completed

        items = list(items)
        if not items:
            return []
        # the shared arguments (scenario matrix, model, book handle) go to every worker once
        shared = self.client.scatter([args], broadcast=True, hash=False)[0]
        tag = f"{getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex[:8]}"
        futures = [self.client.submit(_apply, fn, item, shared, key=f"{tag}-{i}", pure=False)
                   for i, item in enumerate(items)]
        where = {f.key: i for i, f in enumerate(futures)}
        out: list[Any] = [None] * len(items)
        try:
            for fut, res in as_completed(futures, with_results=True):
                i = where[fut.key]
                out[i] = res
                fut.release()
                if progress is not None:
                    progress(weight(items[i], res) if weight is not None else 1)
        finally:
            pending = [f for f in futures if f.status == "pending"]
            if pending:
                self.client.cancel(pending)
            shared.release()
        return out

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        if self._own_client:
            self.client.close()
        if self._own_cluster is not None:
            self._own_cluster.close()
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()


ENGINES = ("local", "dask")


def make_engine(name: str = "local", *, workers: int | None = None, scheduler: str | None = None,
                **kwargs: Any) -> Engine:
    """``"local"`` -> :class:`LocalEngine`; ``"dask"`` -> :class:`DaskEngine` (``workers`` default: CPU count)."""
    if name == "local":
        if scheduler is not None:
            raise ConfigError("--scheduler needs --engine dask")
        return LocalEngine()
    if name == "dask":
        return DaskEngine(workers=workers or os.cpu_count() or 1, scheduler=scheduler, **kwargs)
    raise ConfigError(f"engine {name!r} is not one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "DaskEngine", "Engine", "LocalEngine", "make_engine"]
