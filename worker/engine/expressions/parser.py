"""Parsing an expression or a condition into compiled nodes, with a positioned error for each mistake.

The grammar is STORIES.md's, read by recursive descent, one function per rule::

    cond    := conj ("or" conj)*              conj := neg ("and" neg)*          neg := "not" neg | cmp
    cmp     := expr [("==" | "!=" | "<" | "<=" | ">" | ">=" | "contains") expr] | "(" cond ")"
    expr    := sum ("||" sum)*                sum  := product (("+" | "-") product)*
    product := unary (("*" | "/" | "%") unary)*                                   unary := "-" unary | atom
    atom    := @session.NAME | @user.NAME | @message | "text" | 'text' | NUMBER
             | FUNCTION "(" [expr ("," expr)*] ")" | "(" expr ")"

Inside ``{{ }}`` only ``expr`` is allowed. A ``(`` that starts a comparison may hold a condition or an
expression: it is read as a condition, and when a lone expression inside is followed by an operator, that
expression becomes the first operand of the expression that goes on. Chains of the same operator are
kept flat, and only parentheses, calls, ``-`` and ``not`` nest (at most :data:`~limits.MAX_DEPTH`), so
neither parsing nor evaluating can recurse deeply.
"""

from __future__ import annotations

import difflib
import re
from decimal import Decimal
from typing import Final, NoReturn

from worker.engine.expressions import numbers, tokens
from worker.engine.expressions.errors import TemplateError
from worker.engine.expressions.functions import FUNCTIONS
from worker.engine.expressions.limits import MAX_DEPTH, MAX_EXPRESSION
from worker.engine.expressions.numbers import read_number
from worker.engine.expressions.tokens import CLOSE, END, NUMBER, STRING, WORD, Lexer, Token
from worker.engine.expressions.truths import AllOf, AnyOf, Not, NotEmpty, Truth, comparison
from worker.engine.expressions.values import (
    MESSAGE,
    SESSION,
    TEXT,
    USER,
    Arithmetic,
    Chain,
    Constant,
    Expr,
    FirstSet,
    Negative,
    Operation,
    settled,
)

COMPARISONS: Final = ("==", "!=", "<", "<=", ">", ">=")
_VALUE_OPERATORS: Final = ("||", "+", "-", "*", "/", "%")
CONDITION_WORDS: Final = ("and", "or", "not", "contains")
SUMS: Final[dict[str, Operation]] = {"+": numbers.add, "-": numbers.subtract}
PRODUCTS: Final[dict[str, Operation]] = {
    "*": numbers.multiply, "/": numbers.divide, "%": numbers.remainder
}  # fmt: skip
EXPECTED_VALUE: Final = (
    "expected @session.NAME, @user.NAME, @message, a quoted string, a number, a function or '('"
)
# The simplest expressions, chains of values and plain quoted strings, are read at once (most are such).
_PLAIN = r"""@(?:session|user)\.[A-Za-z0-9_-]+|@message|"[^"\\]*"|'[^'\\]*'"""
_PLAIN_CHAIN: Final = re.compile(rf"\s*((?:{_PLAIN})(?:\s*\|\|\s*(?:{_PLAIN}))*)\s*(\}}\}}|>>)")
_PLAIN_ALTERNATIVE: Final = re.compile(
    r"""@(session|user)\.([A-Za-z0-9_-]+)|@(message)|"([^"\\]*)"|'([^'\\]*)'"""
)
_READS: Final = {tokens.SESSION: SESSION, tokens.USER: USER, tokens.MESSAGE: MESSAGE}
_CLOSERS: Final = {"{{": "}}", "<<": ">>"}


def parse_template_expression(
    source: str, start: int, opened_at: int, opener: str, secrets: bool = False
) -> tuple[Expr, int]:
    """The expression after ``opener`` (at ``opened_at``) and the offset just past its closer; ``secrets``:
    ``@secret.NAME`` may be read."""
    closer = _CLOSERS[opener]
    plain = _PLAIN_CHAIN.match(source, start)
    if plain is not None and plain.group(2) == closer and plain.end() - start <= MAX_EXPRESSION:
        expr = first_set([_plain(found) for found in _PLAIN_ALTERNATIVE.finditer(plain.group(1))])
        expr.source = source[opened_at : plain.end()]
        return expr, plain.end()
    lexer = Lexer(source, start, closer, origin=opened_at, secrets=secrets)
    if lexer.current.kind == CLOSE:
        raise TemplateError(
            opened_at, f"empty expression {opener}{closer}; write one such as {opener}@message{closer}"
        )
    parser = _Parser(lexer, (opener, opened_at))
    expr = settled(parser.expression())
    token = lexer.current
    if token.kind != CLOSE:
        if token.is_word(*CONDITION_WORDS) or token.is_operator(*COMPARISONS):
            parser.not_in_template(token)
        parser.unexpected(token, f"expected an operator or {closer!r}")
    expr.source = source[opened_at : token.end]
    return expr, token.end


def parse_condition(source: str) -> Truth:
    """The condition ``source`` (written without delimiters)."""
    lexer = Lexer(source, 0, None)
    if lexer.current.kind == END:
        raise TemplateError(0, "empty condition")
    parser = _Parser(lexer, None)
    truth = parser.condition()
    token = lexer.current
    if token.kind != END:
        if token.is_operator(*COMPARISONS) or token.is_word("contains"):
            parser.fail(token, f"comparisons do not chain: write a {token.text} b and b {token.text} c")
        parser.unexpected(token, "expected an operator, 'and', 'or' or the end of the condition")
    return truth


class _Parser:
    """One expression or condition; ``template`` is (opener, where it is) inside ``{{ }}`` / ``<< >>``."""

    def __init__(self, lexer: Lexer, template: tuple[str, int] | None) -> None:
        self.lexer = lexer
        self.template = template
        self.depth = 0
        self.previous: Token | None = None

    # -- errors -----------------------------------------------------------------------------------

    def fail(self, token: Token, message: str) -> NoReturn:
        if token.kind == END and self.template is not None:
            opener, opened_at = self.template
            closer = _CLOSERS[opener]
            raise TemplateError(opened_at, f"{opener!r} is never closed with {closer!r}")
        raise TemplateError(token.start, message)

    def not_in_template(self, token: Token) -> NoReturn:
        opener = self.template[0] if self.template is not None else "{{"
        where = f"{opener} {_CLOSERS[opener]}"
        self.fail(token, f"{token.text!r} belongs in conditions (if: / unless:), not inside {where}")

    def unexpected(self, token: Token, message: str) -> NoReturn:
        if token.is_operator(")"):
            self.fail(token, "')' without a '(' before it")
        self.fail(token, message)

    def advance(self) -> Token:
        self.previous = self.lexer.current
        return self.lexer.advance()

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(token, f"nested too deeply (at most {MAX_DEPTH} levels of (), calls, '-' and 'not')")

    def close(self, opening: Token, expected: str) -> None:
        """Expect the ``)`` of ``opening``; ``expected`` says what else could have come."""
        token = self.lexer.current
        if token.is_operator(")"):
            self.advance()
            self.depth -= 1
            return
        if token.kind == CLOSE or (token.kind == END and self.template is None):
            raise TemplateError(opening.start, "'(' is never closed with ')'")
        self.fail(token, expected)

    # -- conditions -------------------------------------------------------------------------------

    def condition(self) -> Truth:
        operands = [self.conjunction()]
        while self.lexer.current.is_word("or"):
            self.advance()
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else AnyOf(tuple(operands))

    def conjunction(self) -> Truth:
        operands = [self.negation()]
        while self.lexer.current.is_word("and"):
            self.advance()
            operands.append(self.negation())
        return operands[0] if len(operands) == 1 else AllOf(tuple(operands))

    def negation(self) -> Truth:
        token = self.lexer.current
        if not token.is_word("not"):
            return self.comparison()
        self.advance()
        self.enter(token)
        operand = self.negation()
        self.depth -= 1
        return Not(operand)

    def comparison(self) -> Truth:
        token = self.lexer.current
        if token.is_operator("("):
            self.advance()
            self.enter(token)
            inner = self.condition()
            self.close(token, "expected an operator, 'and', 'or' or ')'")
            following = self.lexer.current
            goes_on = following.is_operator(*_VALUE_OPERATORS, *COMPARISONS) or following.is_word("contains")
            if not goes_on:
                return inner
            if not isinstance(inner, NotEmpty):
                self.fail(following, f"a condition in parentheses cannot be followed by {following.text!r}")
            left = self.expression(first=inner.operand)
        else:
            left = self.expression()
        token = self.lexer.current
        if not (token.is_operator(*COMPARISONS) or token.is_word("contains")):
            return NotEmpty(settled(left))
        self.advance()
        right = self.expression()
        return comparison(settled(left), token.text, settled(right))

    # -- expressions ------------------------------------------------------------------------------

    def expression(self, first: Expr | None = None) -> Expr:
        operands = [self.sum(first)]
        while self.lexer.current.is_operator("||"):
            self.advance()
            operands.append(self.sum())
        return first_set(operands)

    def sum(self, first: Expr | None = None) -> Expr:
        left = self.product(first)
        steps: list[tuple[Operation, Expr]] = []
        while self.lexer.current.is_operator("+", "-"):
            operation = SUMS[self.advance().text]
            steps.append((operation, self.product()))
        return settled(Arithmetic(left, tuple(steps))) if steps else left

    def product(self, first: Expr | None = None) -> Expr:
        left = self.unary(first)
        steps: list[tuple[Operation, Expr]] = []
        while self.lexer.current.is_operator("*", "/", "%"):
            operation = PRODUCTS[self.advance().text]
            steps.append((operation, self.unary()))
        return settled(Arithmetic(left, tuple(steps))) if steps else left

    def unary(self, first: Expr | None = None) -> Expr:
        if first is not None:
            return first
        token = self.lexer.current
        if not token.is_operator("-"):
            return self.atom()
        self.advance()
        self.enter(token)
        operand = self.unary()
        self.depth -= 1
        return settled(Negative(operand))

    def atom(self) -> Expr:
        token = self.lexer.current
        kind = token.kind
        if kind in _READS:
            self.advance()
            return Chain(((_READS[kind], token.text),))
        if kind == STRING:
            self.advance()
            return Constant(token.text)
        if kind == NUMBER:
            self.advance()
            return Constant(self.number(token))
        if kind == WORD:
            return self.call(token)
        if token.is_operator("("):
            self.advance()
            self.enter(token)
            inner = self.expression()
            self.close(token, "expected an operator or ')'")
            return inner
        previous = self.previous
        if kind in (END, CLOSE) and previous is not None:
            if previous.text in (*COMPARISONS, "contains"):
                self.fail(token, f"expected something to compare after {previous.text!r}")
            self.fail(token, f"{EXPECTED_VALUE} after {previous.text!r}")
        self.unexpected(token, EXPECTED_VALUE)

    def number(self, token: Token) -> str:
        found = read_number(token.text)
        if found is None or found != Decimal(token.text):
            self.fail(
                token,
                f"number {token.text[:20]}{'...' if len(token.text) > 20 else ''} is out of range: at most "
                f"{numbers.PRECISION} significant digits and less than 10^{numbers.MAX_EXPONENT + 1}",
            )
        return numbers.write_number(found)

    def call(self, name: Token) -> Expr:
        self.advance()
        opening = self.lexer.current
        if not opening.is_operator("(") or name.text in CONDITION_WORDS:
            self.bare_word(name)
        function = FUNCTIONS.get(name.text)
        if function is None:
            close = difflib.get_close_matches(name.text.lower(), FUNCTIONS, n=1)
            hint = f"did you mean {close[0]}()?" if close else f"the functions are {', '.join(FUNCTIONS)}"
            self.fail(name, f"unknown function {name.text}(); {hint}")
        self.advance()
        self.enter(opening)
        arguments: list[Expr] = []
        if not self.lexer.current.is_operator(")"):
            arguments.append(self.expression())
            while self.lexer.current.is_operator(","):
                self.advance()
                arguments.append(self.expression())
        self.close(opening, "expected an operator, ',' or ')'")
        if not function.accepts(len(arguments)):
            self.fail(name, f"{name.text}() takes {function.arity()}, not {len(arguments)}")
        return settled(function.build(tuple(arguments)))

    def bare_word(self, word: Token) -> NoReturn:
        text = word.text
        if text in CONDITION_WORDS:
            if self.template is not None:
                self.not_in_template(word)
            self.fail(word, f"{EXPECTED_VALUE}, not {text!r}")
        if text in FUNCTIONS:
            self.fail(word, f"{text} is a function: write {text}(...)")
        self.fail(word, f'{EXPECTED_VALUE} (for the text {text}, write "{text}")')


def _plain(found: re.Match[str]) -> Expr:
    scope, name, message, double, single = found.groups()
    if scope is not None:
        return Chain(((SESSION if scope == "session" else USER, name),))
    if message is not None:
        return Chain(((MESSAGE, ""),))
    return Constant(double if double is not None else single)


def first_set(operands: list[Expr]) -> Expr:
    """``a || b || ...``, without empty constants and what follows a constant that is not empty."""
    kept: list[Expr] = []
    for operand in operands:
        if isinstance(operand, Constant):
            if operand.text:
                kept.append(operand)
                break
            continue
        kept.append(operand)
    if not kept:
        return Constant("")
    if len(kept) == 1:
        return kept[0]
    if all(isinstance(operand, (Chain, Constant)) for operand in kept):
        alternatives: list[tuple[int, str]] = []
        for operand in kept:
            if isinstance(operand, Constant):
                alternatives.append((TEXT, operand.text))
            elif isinstance(operand, Chain):
                alternatives.extend(operand.alternatives)
        return Chain(tuple(alternatives))
    return FirstSet(tuple(kept))
