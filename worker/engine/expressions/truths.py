"""What a condition says: compiled tests evaluated against the session, the user and the message.

``==`` / ``!=`` compare as numbers when both sides read as numbers, else as text ignoring case (Unicode
case-folding) and surrounding whitespace; ``<``, ``<=``, ``>``, ``>=`` hold only between numbers;
``contains`` is a case-insensitive substring test. Text is compared on at most
:data:`~limits.MAX_VALUE` characters of each side, so a huge message costs no more than a short one.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Final

from worker.engine.expressions.limits import cut
from worker.engine.expressions.numbers import read_number
from worker.engine.expressions.values import Constant, Expr, Values

ORDERS: Final[dict[str, Callable[[Decimal, Decimal], bool]]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge
}  # fmt: skip
MIRRORED: Final = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def folded(text: str) -> str:
    """How text compares: trimmed and case-folded."""
    return cut(text).strip().casefold()


class Truth:
    """A compiled condition (or part of one)."""

    __slots__ = ()

    def holds(self, session: Values, user: Values, message: str) -> bool:
        raise NotImplementedError


class NotEmpty(Truth):
    """A lone expression: true when its value is not empty."""

    __slots__ = ("operand",)

    def __init__(self, operand: Expr) -> None:
        self.operand = operand

    def holds(self, session: Values, user: Values, message: str) -> bool:
        return self.operand.value(session, user, message) != ""


class Equal(Truth):
    """``left == right`` (``differ``: ``!=``)."""

    __slots__ = ("differ", "left", "right")

    def __init__(self, left: Expr, right: Expr, differ: bool) -> None:
        self.left = left
        self.right = right
        self.differ = differ

    def holds(self, session: Values, user: Values, message: str) -> bool:
        left = self.left.value(session, user, message)
        right = self.right.value(session, user, message)
        left_number = read_number(left)
        if left_number is not None:
            right_number = read_number(right)
            if right_number is not None:
                return (left_number == right_number) != self.differ
        return (folded(left) == folded(right)) != self.differ


class EqualConstant(Truth):
    """``left == "constant"``, with what the constant compares as worked out when the stories load."""

    __slots__ = ("differ", "left", "number", "text")

    def __init__(self, left: Expr, right: Constant, differ: bool) -> None:
        self.left = left
        self.text = folded(right.text)
        self.number = right.as_number
        self.differ = differ

    def holds(self, session: Values, user: Values, message: str) -> bool:
        left = self.left.value(session, user, message)
        if self.number is not None:
            left_number = read_number(left)
            if left_number is not None:
                return (left_number == self.number) != self.differ
        left = cut(left).strip()
        text = self.text
        if len(left) > len(text):  # case-folding never shortens text: they cannot be equal
            return self.differ
        return (left.casefold() == text) != self.differ


class Order(Truth):
    """``<``, ``<=``, ``>``, ``>=``: true only when both sides are numbers."""

    __slots__ = ("compare", "left", "right")

    def __init__(self, left: Expr, compare: Callable[[Decimal, Decimal], bool], right: Expr) -> None:
        self.left = left
        self.compare = compare
        self.right = right

    def holds(self, session: Values, user: Values, message: str) -> bool:
        left = self.left.number(session, user, message)
        if left is None:
            return False
        right = self.right.number(session, user, message)
        return right is not None and self.compare(left, right)


class Contains(Truth):
    """``left contains right``, ignoring case; every text contains the empty text."""

    __slots__ = ("left", "right")

    def __init__(self, left: Expr, right: Expr) -> None:
        self.left = left
        self.right = right

    def holds(self, session: Values, user: Values, message: str) -> bool:
        part = cut(self.right.value(session, user, message)).casefold()
        return part in cut(self.left.value(session, user, message)).casefold()


class Not(Truth):
    __slots__ = ("operand",)

    def __init__(self, operand: Truth) -> None:
        self.operand = operand

    def holds(self, session: Values, user: Values, message: str) -> bool:
        return not self.operand.holds(session, user, message)


class AllOf(Truth):
    """``a and b and ...``, stopping at the first that does not hold."""

    __slots__ = ("operands",)

    def __init__(self, operands: tuple[Truth, ...]) -> None:
        self.operands = operands

    def holds(self, session: Values, user: Values, message: str) -> bool:
        return all(operand.holds(session, user, message) for operand in self.operands)


class AnyOf(Truth):
    """``a or b or ...``, stopping at the first that holds."""

    __slots__ = ("operands",)

    def __init__(self, operands: tuple[Truth, ...]) -> None:
        self.operands = operands

    def holds(self, session: Values, user: Values, message: str) -> bool:
        return any(operand.holds(session, user, message) for operand in self.operands)


def comparison(left: Expr, op: str, right: Expr) -> Truth:
    """The test ``left op right``, with a constant side worked out in advance where it can be."""
    if isinstance(left, Constant) and not isinstance(right, Constant) and op != "contains":
        left, op, right = right, MIRRORED[op], left
    if op in ("==", "!="):
        if isinstance(right, Constant):
            return EqualConstant(left, right, op == "!=")
        return Equal(left, right, op == "!=")
    if op == "contains":
        return Contains(left, right)
    return Order(left, ORDERS[op], right)
