"""When timers fall due: the contract in :mod:`~gateway.core.schedule.base`, and two implementations side
by side: ``memory`` and ``redis`` (imported only where used). Key names are in
:mod:`gateway.core.store.keys`, beside the store's."""
