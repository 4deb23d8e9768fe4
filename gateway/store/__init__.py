"""Conversation state: the :class:`Store` interface and its in-memory implementation.

The Redis one is imported from :mod:`gateway.store.redis` where needed, so redis-py stays off the import
path of a process that runs with the in-memory store.
"""

from gateway.store.base import Commit, Session, Snapshot, Store, StoreUnavailable
from gateway.store.memory import MemoryStore

__all__ = ["Commit", "MemoryStore", "Session", "Snapshot", "Store", "StoreUnavailable"]
