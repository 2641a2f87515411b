"""The job store: SQLAlchemy 2 async Core on SQLite (default) or Postgres."""

from .blobs import BlobStore
from .listing import JobFilter
from .store import JobStore
from .writes import Limits, NewJob

__all__ = ["BlobStore", "JobFilter", "JobStore", "Limits", "NewJob"]
