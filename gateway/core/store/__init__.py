"""Conversation state: the contract in :mod:`~gateway.core.store.base`, key names in ``keys``, and two
implementations side by side: ``memory`` and ``redis`` (imported only where used, so that redis-py stays
off the import path of a process that runs with the in-memory store)."""
