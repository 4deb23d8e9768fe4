"""Reading an expression's text into tokens, one at a time, each with where it starts.

Tokens are read on demand by the parser, so the first problem in reading order is the one reported.
"""

from __future__ import annotations

import re
from typing import Final, NoReturn

from worker.engine.expressions.errors import TemplateError
from worker.engine.expressions.limits import MAX_EXPRESSION

# Token kinds
SESSION: Final = "session"  # @session.NAME; text is NAME
USER: Final = "user"  # @user.NAME
MESSAGE: Final = "message"  # @message
STRING: Final = "string"  # text is the unescaped content
NUMBER: Final = "number"  # text as written
WORD: Final = "word"  # a function name or and / or / not / contains
OPERATOR: Final = "operator"  # text is the operator
CLOSE: Final = "close"  # the template's closing }} or >>
END: Final = "end"  # the end of the text

OPERATORS: Final = ("||", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "(", ")", ",", "<", ">")
_TWO_CHAR: Final = frozenset(op for op in OPERATORS if len(op) == 2)
_ONE_CHAR: Final = frozenset(op for op in OPERATORS if len(op) == 1)
_MISTAKES: Final = {
    "=": "'=' is not an operator; compare with '=='",
    "!": "'!' is not an operator; use '!=' or 'not'",
    "|": "'|' is not an operator; use '||' for 'else'",
    "&": "'&' is not an operator; use 'and'",
}
_SPACE = re.compile(r"\s*")
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_VARIABLE_WORD = re.compile(r"[A-Za-z0-9_-]*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_STRING_ESCAPES: Final = {'"': '"', "'": "'", "\\": "\\"}
_OTHER_CLOSER: Final = {"}}": ">>", ">>": "}}"}
# ``@secret.NAME`` (allowed only in an http action's request) reads the session under this prefix, a name
# no session value can have: only the values an http action renders with answer it.
SECRET_PREFIX: Final = "@secret."
RESERVED_SECRETS: Final = frozenset({"KEY"})  # GATEWAY_SECRET_KEY signs the gateway's own tokens


class Token:
    __slots__ = ("end", "kind", "start", "text")

    def __init__(self, kind: str, text: str, start: int, end: int) -> None:
        self.kind = kind
        self.text = text
        self.start = start
        self.end = end

    def is_operator(self, *texts: str) -> bool:
        return self.kind == OPERATOR and self.text in texts

    def is_word(self, *words: str) -> bool:
        return self.kind == WORD and self.text in words

    def __repr__(self) -> str:
        return f"Token({self.kind}, {self.text!r}, {self.start})"


class Lexer:
    """Tokens of ``source`` from ``start``; with a ``closer`` (``}}`` or ``>>``) it ends there."""

    def __init__(
        self, source: str, start: int, closer: str | None, origin: int | None = None, secrets: bool = False
    ) -> None:
        self.source = source
        self.secrets = secrets  # @secret.NAME may be read
        self.origin = start if origin is None else origin  # where a too long expression is reported
        self.start = start
        self.closer = closer
        self.position = start
        self.current = self._read()

    def advance(self) -> Token:
        """The current token; the next one becomes current (not past the end or the closer)."""
        token = self.current
        if token.kind not in (END, CLOSE):
            self.current = self._read()
        return token

    def _read(self) -> Token:
        source = self.source
        start = _SPACE.match(source, self.position).end()  # type: ignore[union-attr]
        token = self._token(source, start)
        if token.end - self.start > MAX_EXPRESSION and token.kind not in (END, CLOSE):
            self.too_long()
        self.position = token.end
        return token

    def too_long(self) -> NoReturn:
        raise TemplateError(self.origin, f"expression longer than {MAX_EXPRESSION} characters; split it")

    def _token(self, source: str, start: int) -> Token:
        closer = self.closer
        if closer is not None and source.startswith(closer, start):
            return Token(CLOSE, closer, start, start + 2)
        if start >= len(source):
            return Token(END, "", start, start)
        char = source[start]
        if char == "@":
            return self._variable(source, start)
        if char in ('"', "'"):
            return self._string(source, start)
        if "0" <= char <= "9":
            end = _NUMBER.match(source, start).end()  # type: ignore[union-attr]
            return Token(NUMBER, source[start:end], start, end)
        word = _WORD.match(source, start)
        if word is not None:
            return Token(WORD, word.group(), start, word.end())
        pair = source[start : start + 2]
        if closer is not None and pair == _OTHER_CLOSER[closer]:
            opener = "{{" if closer == "}}" else "<<"
            raise TemplateError(start, f"{opener!r} closes with {closer!r}, not {pair!r}")
        if closer is None and pair in ("{{", "<<"):
            raise TemplateError(start, "write conditions without {{ }}, e.g. '@session.City == \"Paris\"'")
        if pair in _TWO_CHAR:
            return Token(OPERATOR, pair, start, start + 2)
        if char in _ONE_CHAR:
            return Token(OPERATOR, char, start, start + 1)
        raise TemplateError(start, _MISTAKES.get(char, f"unexpected character {char!r}"))

    def _variable(self, source: str, start: int) -> Token:
        word_end = _VARIABLE_WORD.match(source, start + 1).end()  # type: ignore[union-attr]
        word = source[start + 1 : word_end]
        if word == "message":
            if source.startswith(".", word_end):
                raise TemplateError(word_end, "@message has no fields; use @message alone")
            return Token(MESSAGE, "", start, word_end)
        if word == "secret":
            return self._secret(source, start, word_end)
        if word not in ("session", "user"):
            shown = f"@{word}" if word else "@"
            hint = " (to subtract, put spaces around '-')" if word.startswith("message-") else ""
            raise TemplateError(
                start, f"unknown variable {shown} (use @session.NAME, @user.NAME or @message){hint}"
            )
        if not source.startswith(".", word_end):
            raise TemplateError(word_end, f"@{word} needs a name: @{word}.NAME")
        name = _NAME.match(source, word_end + 1)
        if name is None:
            raise TemplateError(word_end + 1, f"@{word}. needs a name of letters, digits, '_' and '-'")
        return Token(SESSION if word == "session" else USER, name.group(), start, name.end())

    def _secret(self, source: str, start: int, word_end: int) -> Token:
        if not self.secrets:
            raise TemplateError(
                start, "@secret.NAME is allowed only in the url, headers, json and body of an http action"
            )
        name = _NAME.match(source, word_end + 1) if source.startswith(".", word_end) else None
        if name is None:
            raise TemplateError(word_end, "@secret needs a name of letters, digits, '_' and '-'")
        if name.group() in RESERVED_SECRETS:
            reserved = name.group()
            raise TemplateError(
                start, f"@secret.{reserved} is reserved: GATEWAY_SECRET_{reserved} signs the gateway's tokens"
            )
        return Token(SESSION, SECRET_PREFIX + name.group(), start, name.end())

    def _string(self, source: str, start: int) -> Token:
        quote = source[start]
        out: list[str] = []
        index = start + 1
        length = min(len(source), self.start + MAX_EXPRESSION + 1)
        while index < length:
            char = source[index]
            if char == quote:
                return Token(STRING, "".join(out), start, index + 1)
            if char == "\\":
                escaped = source[index + 1 : index + 2]
                if escaped not in _STRING_ESCAPES:
                    shown = "\\" + escaped if escaped else "a lone \\"
                    raise TemplateError(
                        index, f"unknown escape {shown} in a quoted string (use \\\", \\' or \\\\)"
                    )
                out.append(_STRING_ESCAPES[escaped])
                index += 2
                continue
            out.append(char)
            index += 1
        if index < len(source):
            self.too_long()
        raise TemplateError(start, f"quoted string is never closed with {quote}")
