"""Every error the layers share, in one module, so that each raises and catches the same names.

Two families decide what the bus does with the work in hand (see :mod:`gateway.core.bus.base`):
:class:`Unavailable` (a service is away: retry in place, it is not the message's fault) and
:class:`Rejected` (the message can never be handled: dead-letter it now). The others are raised at the
edges: :class:`SettingsError` at start, :class:`SchemaError` when a bus message does not parse.
"""

from __future__ import annotations


class Unavailable(Exception):
    """A service (broker or store) cannot be reached now; the work is retried, not failed."""


class BusUnavailable(Unavailable):
    """The broker did not take (confirm) a message."""


class StoreUnavailable(Unavailable):
    """The store cannot be reached now; the bus retries the work in place, without counting a failure."""


class Rejected(Exception):
    """A message that can never be handled (it does not parse, it breaks a rule): dead-letter it now."""


class SchemaError(ValueError):
    """A bus message that does not parse as the schema says; it is dead-lettered, never retried."""


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""
