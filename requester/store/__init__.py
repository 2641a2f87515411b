"""The job store: SQLAlchemy 2 async Core on SQLite (default) or Postgres."""

from .listing import JobFilter
from .store import JobStore
from .writes import Limits, NewJob

__all__ = ["JobFilter", "JobStore", "Limits", "NewJob"]
