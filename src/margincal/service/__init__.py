"""margincal.service: the HTTP API (FastAPI), API-key auth and the dashboard.

``create_app(ServiceSettings(store=path))`` builds the app; ``margincal serve``
runs it. See docs/service.md.
"""

from typing import Any

__all__ = ["ServiceSettings", "create_app"]


def __getattr__(name: str) -> Any:
    # lazy: `margincal keys ...` (and `--help`) import margincal.service.auth without FastAPI and the margin stack
    if name in __all__:
        from margincal.service import app

        return getattr(app, name)
    raise AttributeError(name)
