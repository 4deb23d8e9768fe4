"""Broadcasts kept in the store: definition, progress and runner; the interface in ``base``, implementations
in ``memory`` and ``redis`` (imported only where used)."""
