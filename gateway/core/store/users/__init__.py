"""A user's data and a channel's user index: the interfaces in ``base``, implementations in ``memory`` and
``redis`` (imported only where used)."""
