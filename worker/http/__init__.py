"""Calls of the stories' http actions: one interface (:class:`Caller`), the real client beside canned answers.

``HttpClient`` (``client``) makes real calls behind the address guard (``guard``, ``resolver``);
``CannedCaller`` (``canned``) answers from a list, for conversation tests.
"""

from worker.http.base import Caller, NoCalls
from worker.http.canned import Canned, CannedCaller
from worker.http.client import HttpClient
from worker.http.guard import AddressPolicy

__all__ = ["AddressPolicy", "Caller", "Canned", "CannedCaller", "HttpClient", "NoCalls"]
