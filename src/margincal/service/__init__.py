"""margincal.service: the HTTP API (FastAPI), API-key auth and the dashboard.

``create_app(ServiceSettings(store=path))`` builds the app; ``margincal serve``
runs it. See docs/service.md.
"""

from margincal.service.app import ServiceSettings, create_app

__all__ = ["ServiceSettings", "create_app"]
