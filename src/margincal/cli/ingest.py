"""`margincal ingest FILE`: load validated bars / funding / open interest / option quotes into the store."""
from __future__ import annotations
