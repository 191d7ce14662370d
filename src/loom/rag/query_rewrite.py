"""`rewrite_query`: a deterministic rewrite of a search query into its content words.

OpenAI rewrites with a model; Loom drops what carries no meaning for search (question
words, articles, auxiliaries, punctuation), which needs no model call and gives the same
rewrite every time. An all-stopword query is left as it was.
"""

from __future__ import annotations

import re

_STOPWORD_TEXT = """a an the and or of to in on at for from by with about as into
    is are was were be been
    being am do does did what which who whom whose when where why how can could would should
    will shall may might must i me my we our you your he she it its they them their this that
    these those there here please tell show find give list any some all me us"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"[\w'-]+", re.UNICODE)


def rewrite(query: str) -> str:
    words = _WORD.findall(query)
    kept = [w for w in words if w.lower() not in _STOPWORDS]
    return " ".join(kept) if kept else query.strip()
