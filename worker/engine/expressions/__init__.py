"""The expression language of templates and conditions (STORIES.md, "Expressions: numbers and functions").

Compiled once when the stories load (:mod:`parser`, reading tokens from :mod:`tokens`) into trees of
small nodes (:mod:`values` for what an expression is worth, :mod:`truths` for what a condition says) that
are evaluated without parsing. Numbers are decimal and bounded (:mod:`numbers`), so is every value a
function or an operator makes (:mod:`limits`); nothing a user types can make evaluation raise or run long.
"""
