"""Time in stories: a waiting step's ``timeout`` and the ``follow_up`` action, fired as messages of their
conversation.

- :mod:`~worker.timers.pending`: a conversation's pending timers, kept as its ``timers`` record and
  written by the same atomic commit as the turn that changed them.
- :mod:`~worker.timers.plan`: what one turn does to them (cancel on reply, replace, set new ones).
- :mod:`~worker.timers.turns`: the story worker's side: run a message or a firing, commit, apply the
  turn's schedule changes after the commit (again on a replay).
- :mod:`~worker.timers.poller`: the side that watches the clock: each worker polls the schedule of the
  partitions it leases and publishes a firing for each timer that falls due.
- :mod:`~worker.timers.simulation`: simulated time for ``gateway test`` and ``gateway chat``.

Why this design, and what it costs: ``docs/architecture.md``, "Timers".
"""
