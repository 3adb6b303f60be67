"""A frontend's translation table: the framework's op names, each with the function that
translates a node of that op into core ops.

``TRANSLATIONS = TranslationTable("TFLite")`` in the frontend's op module(s), and
``@TRANSLATIONS.translates("ADD", "SUB")`` on each translation; a name entered twice is a
mistake of the frontend (two translations of one op), refused at import.
"""

from __future__ import annotations

from typing import Callable


class TranslationTable(dict):
    """Op name -> translation function, for the framework named ``framework``."""

    def __init__(self, framework: str):
        super().__init__()
        self.framework = framework

    def translates(self, *names: str) -> Callable[[Callable], Callable]:
        """A decorator that enters a translation function under each of ``names``."""
        def register(fn: Callable) -> Callable:
            for n in names:
                if n in self:
                    raise ValueError(f"{self.framework} op {n} is translated twice "
                                     f"({self[n].__name__} and {fn.__name__})")
                self[n] = fn
            return fn
        return register

    def names(self) -> list[str]:
        """Every op name the table translates, sorted."""
        return sorted(self)
