"""Salesforce-style record ids: ``<3-char key prefix><12 base62 chars><3-char suffix>``.

The suffix is the real case-safety checksum of the 15-character id, so 15- and 18-character
forms both resolve (``normalize``).  Ids are minted from a counter, so the same seed gives the
same ids.
"""

from __future__ import annotations

import itertools
import threading

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def checksum(id15: str) -> str:
    out = []
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX[bits])
    return "".join(out)


def to18(id15: str) -> str:
    return id15 + checksum(id15)


def normalize(record_id: str) -> str | None:
    """The 18-char form of a 15- or 18-char id, or None when it is not a well-formed id."""
    if len(record_id) == 18 and record_id.isalnum():
        return record_id if checksum(record_id[:15]) == record_id[15:] else None
    if len(record_id) == 15 and record_id.isalnum():
        return to18(record_id)
    return None


class IdMinter:
    """Mints deterministic ids per key prefix (thread-safe)."""

    def __init__(self, pod: str = "5g") -> None:
        self._pod = pod
        self._counters: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()

    def mint(self, prefix: str) -> str:
        with self._lock:
            n = next(self._counters.setdefault(prefix, itertools.count(1)))
        body = []
        for _ in range(10 - len(self._pod)):
            n, r = divmod(n, 62)
            body.append(_B62[r])
        return to18(prefix + self._pod + "00" + "".join(reversed(body)))
