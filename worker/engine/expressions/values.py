"""What an expression is worth: compiled nodes evaluated against the session, the user and the message.

Every node gives its value as text (``""`` is unset) and as a number (None: unset or not a number), and
never raises. A value read from the session, the user or the message is passed on as it is: it is never
parsed, only read as a number where arithmetic needs one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Final

from worker.engine.expressions.numbers import negate, read_number, write_number

Values = Mapping[str, str]
Operation = Callable[[Decimal, Decimal], "Decimal | None"]

NOTHING: Final[Values] = {}

# Kinds of the alternatives of a Chain
SESSION: Final = 0
USER: Final = 1
MESSAGE: Final = 2
TEXT: Final = 3


class Expr:
    """A compiled expression. ``variable`` is False when its value is known without any values."""

    __slots__ = ("source", "variable")

    def __init__(self, variable: bool) -> None:
        self.variable = variable
        self.source = ""  # what the designer wrote, for templates' parts

    def value(self, session: Values, user: Values, message: str) -> str:
        raise NotImplementedError

    def number(self, session: Values, user: Values, message: str) -> Decimal | None:
        return read_number(self.value(session, user, message))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"


class Constant(Expr):
    """A quoted string, a number, or an expression computed when the stories load."""

    __slots__ = ("as_number", "text")

    def __init__(self, text: str) -> None:
        super().__init__(variable=False)
        self.text = text
        self.as_number = read_number(text)

    def value(self, session: Values, user: Values, message: str) -> str:
        return self.text

    def number(self, session: Values, user: Values, message: str) -> Decimal | None:
        return self.as_number

    def __repr__(self) -> str:
        return f"Constant({self.text!r})"


class Chain(Expr):
    """``a || b || ...`` where each is a value read as it is or a quoted string: ``(kind, name)`` pairs."""

    __slots__ = ("alternatives",)

    def __init__(self, alternatives: tuple[tuple[int, str], ...]) -> None:
        super().__init__(variable=True)
        self.alternatives = alternatives

    def value(self, session: Values, user: Values, message: str) -> str:
        for kind, name in self.alternatives:
            if kind == SESSION:
                found = session.get(name)
            elif kind == USER:
                found = user.get(name)
            elif kind == MESSAGE:
                found = message
            else:
                return name
            if found:
                return found if found.__class__ is str else str(found)
        return ""


class FirstSet(Expr):
    """``a || b || ...``: the first value that is set and not empty."""

    __slots__ = ("operands",)

    def __init__(self, operands: tuple[Expr, ...]) -> None:
        super().__init__(variable=True)
        self.operands = operands

    def value(self, session: Values, user: Values, message: str) -> str:
        for operand in self.operands:
            found = operand.value(session, user, message)
            if found:
                return found
        return ""


class Arithmetic(Expr):
    """``first op operand op operand ...`` from left to right; unset as soon as one step is."""

    __slots__ = ("first", "steps")

    def __init__(self, first: Expr, steps: tuple[tuple[Operation, Expr], ...]) -> None:
        super().__init__(first.variable or any(operand.variable for _, operand in steps))
        self.first = first
        self.steps = steps

    def number(self, session: Values, user: Values, message: str) -> Decimal | None:
        result = self.first.number(session, user, message)
        for operation, operand in self.steps:
            if result is None:
                return None
            right = operand.number(session, user, message)
            if right is None:
                return None
            result = operation(result, right)
        return result

    def value(self, session: Values, user: Values, message: str) -> str:
        result = self.number(session, user, message)
        return "" if result is None else write_number(result)


class Negative(Expr):
    """``-operand``."""

    __slots__ = ("operand",)

    def __init__(self, operand: Expr) -> None:
        super().__init__(operand.variable)
        self.operand = operand

    def number(self, session: Values, user: Values, message: str) -> Decimal | None:
        found = self.operand.number(session, user, message)
        return None if found is None else negate(found)

    def value(self, session: Values, user: Values, message: str) -> str:
        result = self.number(session, user, message)
        return "" if result is None else write_number(result)


def settled(expr: Expr) -> Expr:
    """``expr``, or its value as a :class:`Constant` when it does not depend on any value."""
    if expr.variable or isinstance(expr, Constant):
        return expr
    return Constant(expr.value(NOTHING, NOTHING, ""))
