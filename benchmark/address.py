"""The released IAL address form: parsing, normalisation, street keys and the address book."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from benchmark.errors import BenchmarkError

_SPACE = re.compile(r"\s+")
_AND = re.compile(r"\s+and\s+")


class AddressParseError(BenchmarkError):
    """An address string that is not in the released form."""


def normalize(text: str) -> str:
    """Unicode NFC, whitespace collapsed and trimmed; case is kept."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


@dataclass(frozen=True)
class Address:
    """A sub-street address: ``<Main>, <Neighbourhood> (<Cross>, <Neighbourhood>[ and ...])``."""

    main_street: str
    neighbourhood: str
    cross_streets: tuple[tuple[str, str], ...] = ()

    @property
    def street_key(self) -> str:
        """The street-level label: the text before the parenthesis."""
        return f"{self.main_street}, {self.neighbourhood}"

    @property
    def text(self) -> str:
        """The canonical sub-street string (the whole address)."""
        if not self.cross_streets:
            return self.street_key
        cross = " and ".join(f"{s}, {n}" for s, n in self.cross_streets)
        return f"{self.street_key} ({cross})"

    def __str__(self) -> str:
        return self.text


def _split_street(part: str, text: str) -> tuple[str, str]:
    street, comma, hood = part.rpartition(",")
    street, hood = street.strip(), hood.strip()
    if not comma or not street or not hood:
        raise AddressParseError(f"address {text!r}: expected '<Street>, <Neighbourhood>' but got {part.strip()!r}")
    return street, hood


@lru_cache(maxsize=65536)
def parse_address(text: str) -> Address:
    """Parse a released-form address; raises AddressParseError naming what is wrong."""
    clean = normalize(text)
    if not clean:
        raise AddressParseError("empty address")
    head, paren, rest = clean.partition("(")
    if not paren:
        if ")" in clean:
            raise AddressParseError(f"address {text!r}: ')' without '('")
        main, hood = _split_street(head, text)
        return Address(main, hood)
    if not rest.endswith(")") or "(" in rest or rest.count(")") != 1:
        raise AddressParseError(f"address {text!r}: the cross streets must be one '( ... )' group at the end")
    main, hood = _split_street(head, text)
    inner = rest[:-1].strip()
    if not inner:
        raise AddressParseError(f"address {text!r}: empty cross-street list '()'")
    # "A, H1 and B, H2": a neighbourhood never holds a comma, so split on commas and peel
    # the " and " that joins one neighbourhood to the next street.
    pieces = [p.strip() for p in inner.split(",")]
    cross: list[tuple[str, str]] = []
    street = pieces[0]
    for piece in pieces[1:-1]:
        joined = _AND.split(piece, maxsplit=1)
        if len(joined) != 2:
            raise AddressParseError(f"address {text!r}: cross streets must be joined by ' and '")
        cross.append((street, joined[0]))
        street = joined[1]
    if len(pieces) < 2:
        raise AddressParseError(f"address {text!r}: expected '<Cross street>, <Neighbourhood>' inside '( )'")
    cross.append((street, pieces[-1]))
    if any(not s or not n for s, n in cross):
        raise AddressParseError(f"address {text!r}: empty cross street or neighbourhood")
    return Address(main, hood, tuple(cross))


def street_key(text: str) -> str:
    """Street key (main street, neighbourhood) of an address string."""
    return parse_address(text).street_key


class AddressBook:
    """The candidate set: distinct sub-street addresses, with their street keys and frequencies."""

    def __init__(self, addresses: Iterable[str]):
        counts = Counter(normalize(a) for a in addresses)
        # Most frequent first, ties by text, so that every ordering derived from the book is stable.
        self.addresses: list[str] = sorted(counts, key=lambda a: (-counts[a], a))
        self.counts: dict[str, int] = dict(counts)
        self.index: dict[str, int] = {a: i for i, a in enumerate(self.addresses)}
        self.street_keys: list[str] = [street_key(a) for a in self.addresses]

    def __len__(self) -> int:
        return len(self.addresses)

    def __contains__(self, address: str) -> bool:
        return normalize(address) in self.index

    @property
    def streets(self) -> set[str]:
        """Distinct street keys."""
        return set(self.street_keys)

    @property
    def neighbourhoods(self) -> set[str]:
        """Distinct neighbourhoods named anywhere in the addresses."""
        hoods = set()
        for a in self.addresses:
            parsed = parse_address(a)
            hoods.add(parsed.neighbourhood)
            hoods.update(n for _, n in parsed.cross_streets)
        return hoods
