"""Moved to :mod:`margincal.data.audit` (the audit log lives beside the store it is written to).

This name stays so existing ``from margincal.adjust import audit`` code keeps working; new code
imports :mod:`margincal.data.audit`.
"""

from margincal.data.audit import GENESIS, ChainReport, append, entries, verify_chain

__all__ = ["GENESIS", "ChainReport", "append", "entries", "verify_chain"]
