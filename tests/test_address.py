"""The released address form: parsing, normalisation, street keys, the address book."""

from __future__ import annotations

import pytest

from benchmark.address import Address, AddressBook, AddressParseError, normalize, parse_address, street_key


def test_parse_single_cross_street():
    a = parse_address("Second Avenue, Downtown (Try Street, Downtown)")
    assert a == Address("Second Avenue", "Downtown", (("Try Street", "Downtown"),))
    assert a.street_key == "Second Avenue, Downtown"
    assert a.text == "Second Avenue, Downtown (Try Street, Downtown)"


def test_parse_two_cross_streets_in_other_neighbourhoods():
    a = parse_address("11th Street, Strip District (Liberty Avenue, Downtown and Penn Avenue, Strip District)")
    assert a.main_street == "11th Street" and a.neighbourhood == "Strip District"
    assert a.cross_streets == (("Liberty Avenue", "Downtown"), ("Penn Avenue", "Strip District"))


def test_parse_names_with_dots_hyphens_and_unicode():
    a = parse_address("P. J. McArdle Roadway, South Side Slopes (Crawford-Roberts Way, Kaartinkaupunki)")
    assert a.main_street == "P. J. McArdle Roadway" and a.cross_streets[0][1] == "Kaartinkaupunki"
    assert parse_address("Pohjoisesplanadi, Kluuvi (Unioninkatu, Kluuvi)").neighbourhood == "Kluuvi"


def test_parse_without_cross_streets():
    assert parse_address("Lonely Road, Nowhere") == Address("Lonely Road", "Nowhere")


def test_normalisation_nfc_and_whitespace_but_case_kept():
    decomposed = "Ha\u0308meentie,  Kallio \n(Ka\u0308a\u0308rmetie, Kallio)"
    a = parse_address(decomposed)
    assert a.text == "Hämeentie, Kallio (Käärmetie, Kallio)"
    assert normalize(" A  b ") == "A b"
    assert street_key("second avenue, Downtown (X, Y)") != street_key("Second Avenue, Downtown (X, Y)")


@pytest.mark.parametrize("bad", [
    "",
    "No neighbourhood here",
    ", Downtown (A, B)",
    "Main, Downtown (A, B",
    "Main, Downtown A, B)",
    "Main, Downtown ()",
    "Main, Downtown (A)",
    "Main, Downtown (A, B) trailing",
    "Main, Downtown (A, B or C, D)",
])
def test_malformed_addresses_raise(bad):
    with pytest.raises(AddressParseError):
        parse_address(bad)


def test_address_book_orders_by_frequency_then_text():
    book = AddressBook(["B St, X (A, X)", "A St, X (B, X)", "B St, X (A, X)", "C St, Y (A, X)"])
    assert book.addresses == ["B St, X (A, X)", "A St, X (B, X)", "C St, Y (A, X)"]
    assert len(book) == 3 and "A St, X (B, X)" in book and "Z St, X (A, X)" not in book
    assert book.streets == {"A St, X", "B St, X", "C St, Y"} and book.neighbourhoods == {"X", "Y"}
