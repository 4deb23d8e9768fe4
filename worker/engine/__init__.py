"""The story engine: load and validate stories, then run them as a pure function of one message.

``load_stories(folder)`` raises :class:`StoriesError` listing every problem; ``Engine(stories).handle(
session, user, message, now)`` returns the :class:`Turn` to commit.
"""

from worker.engine.engine import Engine, Turn
from worker.engine.loader import load_stories
from worker.engine.model import Stories
from worker.engine.problems import Problem, StoriesError

__all__ = ["Engine", "Problem", "Stories", "StoriesError", "Turn", "load_stories"]
