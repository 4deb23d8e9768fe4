"""Broadcasts: start a story for every known user of a channel whose attributes match a condition.

``audience`` compiles the condition (STORIES.md syntax, ``@user.*`` only); ``runner`` walks the channel's
user index and publishes one start message per matched user on their conversation's partition, paced,
resumable. The admin API and ``gateway broadcast`` create broadcasts; the worker role runs them.
"""

from worker.broadcast.audience import AudienceError, compile_audience
from worker.broadcast.runner import BroadcastRunner, start_message

__all__ = ["AudienceError", "BroadcastRunner", "compile_audience", "start_message"]
