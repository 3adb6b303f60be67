"""Host ops: StringNormalizer, StringConcat, StringSplit, RegexFullMatch (and Equal on strings,
see ``elementwise``) and ImageDecoder become the host ops of ``ember.ops.strings`` and
``ember.ops.images``; a dimension of a result that the data decides gets a symbol of its own
(``NodeContext.data_symbol``)."""

from __future__ import annotations

from ...graph.types import is_string
from . import translates


def _string_input(cx, i: int = 0):
    v = cx.input(i)
    if not is_string(v.dtype):
        raise cx.fail(f"input {i} must be a string tensor, got {v.type}")
    return v


@translates("StringNormalizer")
def string_normalizer(cx):
    x = _string_input(cx)
    case = cx.attr("case_change_action", "NONE")
    stopwords = tuple(cx.attr("stopwords", []))
    c = x.shape[-1] if x.type.rank else None
    length = cx.data_symbol("length", c if isinstance(c, int) else None) if stopwords or not isinstance(c, int) else ""
    return cx.op("string_normalize", [x], case=case, case_sensitive=bool(cx.attr("is_case_sensitive", 0)),
                 stopwords=stopwords, locale=cx.attr("locale", ""), length=length)


@translates("StringConcat")
def string_concat(cx):
    return cx.op("string_concat", [_string_input(cx, 0), _string_input(cx, 1)])


@translates("StringSplit")
def string_split(cx):
    x = _string_input(cx)
    maxsplit = cx.attr("maxsplit", None)
    if maxsplit is not None and maxsplit < 0:
        raise cx.fail(f"maxsplit must not be negative, got {maxsplit}")
    pieces = cx.data_symbol("pieces", None if maxsplit is None else maxsplit + 1)
    return cx.op("string_split", [x], delimiter=cx.attr("delimiter", ""),
                 maxsplit=-1 if maxsplit is None else maxsplit, pieces=pieces)


@translates("RegexFullMatch")
def regex_full_match(cx):
    return cx.op("regex_full_match", [_string_input(cx)], pattern=cx.attr("pattern"))


@translates("ImageDecoder")
def image_decoder(cx):
    x = cx.input(0)
    if x.dtype != "uint8" or x.type.rank != 1:
        raise cx.fail(f"the encoded image must be a 1-D uint8 tensor, got {x.type}")
    return cx.op("image_decode", [x], pixel_format=cx.attr("pixel_format", "RGB"),
                 height=cx.data_symbol("height"), width=cx.data_symbol("width"))
