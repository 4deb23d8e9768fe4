"""Lua scripts named by their SHA-1, sent as EVALSHA and loaded again when Redis has forgotten them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A script's source and SHA-1; run it with :meth:`gateway.core.redis.pipeline.AutoPipeline.run`."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> LuaScript:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())
