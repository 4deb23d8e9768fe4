"""Conversation tests (``gateway test``): designer-written chats run through an in-process gateway.

``run_tests(path, stories_dir)`` runs the files and prints the report; ``read_test_file`` and
``run_conversation`` are the pieces, for tools that want them one by one. Format: docs/testing.md.
"""

from designer.conversation_tests.command import run_tests
from designer.conversation_tests.failure import Failure
from designer.conversation_tests.reader import read_test_file
from designer.conversation_tests.runner import run_conversation

__all__ = ["Failure", "read_test_file", "run_conversation", "run_tests"]
