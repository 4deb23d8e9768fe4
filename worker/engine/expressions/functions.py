"""The functions of expressions: ``upper``, ``lower``, ``trim``, ``length``, ``round``, ``min``, ``max``.

Text functions read at most :data:`~limits.MAX_VALUE` characters and return at most as many, so a huge
message costs no more than a short one; number functions are unset when an argument is not a number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from worker.engine.expressions.limits import cut
from worker.engine.expressions.numbers import largest, round_to, smallest, write_number
from worker.engine.expressions.values import Expr, Values


class TextCall(Expr):
    """``upper(x)``, ``lower(x)``, ``trim(x)``."""

    __slots__ = ("apply", "argument")

    def __init__(self, apply: Callable[[str], str], argument: Expr) -> None:
        super().__init__(argument.variable)
        self.apply = apply
        self.argument = argument

    def value(self, session: Values, user: Values, message: str) -> str:
        return cut(self.apply(cut(self.argument.value(session, user, message))))


class Length(Expr):
    """``length(x)``: how many characters (Unicode code points) ``x`` has, all of them; 0 when unset."""

    __slots__ = ("argument",)

    def __init__(self, argument: Expr) -> None:
        super().__init__(argument.variable)
        self.argument = argument

    def number(self, session: Values, user: Values, message: str) -> Decimal | None:
        return Decimal(len(self.argument.value(session, user, message)))

    def value(self, session: Values, user: Values, message: str) -> str:
        return str(len(self.argument.value(session, user, message)))


class Round(Expr):
    """``round(x)`` and ``round(x, digits)``, half away from zero."""

    __slots__ = ("argument", "digits")

    def __init__(self, argument: Expr, digits: Expr | None) -> None:
        super().__init__(argument.variable or (digits is not None and digits.variable))
        self.argument = argument
        self.digits = digits

    def number(self, session: Values, user: Values, message: str) -> Decimal | None:
        found = self.argument.number(session, user, message)
        if found is None:
            return None
        if self.digits is None:
            return round_to(found)
        digits = self.digits.number(session, user, message)
        return None if digits is None else round_to(found, digits)

    def value(self, session: Values, user: Values, message: str) -> str:
        result = self.number(session, user, message)
        return "" if result is None else write_number(result)


class Extreme(Expr):
    """``min(a, b, ...)`` and ``max(a, b, ...)``; unset unless every argument is a number."""

    __slots__ = ("arguments", "pick")

    def __init__(self, pick: Callable[[Sequence[Decimal]], Decimal], arguments: tuple[Expr, ...]) -> None:
        super().__init__(any(argument.variable for argument in arguments))
        self.pick = pick
        self.arguments = arguments

    def number(self, session: Values, user: Values, message: str) -> Decimal | None:
        found: list[Decimal] = []
        for argument in self.arguments:
            number = argument.number(session, user, message)
            if number is None:
                return None
            found.append(number)
        return self.pick(found)

    def value(self, session: Values, user: Values, message: str) -> str:
        result = self.number(session, user, message)
        return "" if result is None else write_number(result)


@dataclass(frozen=True, slots=True)
class Function:
    """A function's name, how many arguments it takes (``most`` None: no limit) and its node."""

    name: str
    least: int
    most: int | None
    build: Callable[[tuple[Expr, ...]], Expr]

    def arity(self) -> str:
        if self.most is None:
            return f"at least {self.least} arguments"
        if self.most == self.least:
            return f"{self.least} argument{'s' if self.least != 1 else ''}"
        return f"{self.least} or {self.most} arguments"

    def accepts(self, count: int) -> bool:
        return self.least <= count and (self.most is None or count <= self.most)


FUNCTIONS: dict[str, Function] = {
    function.name: function
    for function in (
        Function("upper", 1, 1, lambda args: TextCall(str.upper, args[0])),
        Function("lower", 1, 1, lambda args: TextCall(str.lower, args[0])),
        Function("trim", 1, 1, lambda args: TextCall(str.strip, args[0])),
        Function("length", 1, 1, lambda args: Length(args[0])),
        Function("round", 1, 2, lambda args: Round(args[0], args[1] if len(args) > 1 else None)),
        Function("min", 2, None, lambda args: Extreme(smallest, args)),
        Function("max", 2, None, lambda args: Extreme(largest, args)),
    )
}
