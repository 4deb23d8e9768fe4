"""Handing a conversation over to a person and back (STORIES.md, "Handing over to a person").

- :mod:`~worker.handoff.state`: the ``handoff`` record of a handed-over conversation.
- :mod:`~worker.handoff.transcript`: the last messages of the conversation, for the ticket.
- :mod:`~worker.handoff.tickets`: what goes to a desk: the ticket email or Slack thread, and the user's
  later messages in it.
- :mod:`~worker.handoff.turns`: the story worker's side: open a handoff, pass the user's messages to the
  desk and a person's answers to the user, hand back (``#bot``, the button, ``until``) and resume.
"""

from worker.handoff.turns import DeskTurn, DeskTurns

__all__ = ["DeskTurn", "DeskTurns"]
