"""cookie 0.7.2 parsing rules, one by one."""

from __future__ import annotations

import pytest

from sessionvalidator_service.cookies import decode_uri_component, decode_value, find_cookie, value_from_text


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a=1", "1"),
        ("a", None),  # shorter than two characters: {}
        ("=", None),
        ("b; a=1", "1"),  # a segment without '=' is skipped
        ("a=1;a=2", "1"),  # first wins
        ("x=1,a=2", None),  # ',' separates nothing
        ("a==b", "=b"),
        ('a="abc"', "abc"),
        ('a="abc', '"abc'),  # only a matching pair of quotes is stripped
        ('a="', ""),
        ('a=""', ""),
        ("a=\t 1 \t", "1"),  # space and TAB are trimmed
        ("a=\r1\n", "\r1\n"),  # CR and LF are not
        ("a=\xa01\xa0", "\xa01\xa0"),  # nor NBSP
        (" \ta\t =1", "1"),
        ("A=1", None),  # names are case-sensitive
        ("xa=1; a=2", "2"),
        ("a=1%2", "1%2"),  # a bad escape keeps the raw value
        ("a=%2B+", "++"),  # '+' is never a space
    ],
)
def test_find_cookie(header: str, expected: str | None) -> None:
    assert find_cookie(header, "a") == expected


def test_empty_key_is_a_name_of_its_own() -> None:
    assert find_cookie("=x; a=y", "") == "x"
    assert find_cookie("=x; a=y", "a") == "y"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc", "abc"),
        ("%41%42", "AB"),
        ("%c3%a9", "\u00e9"),  # hex digits in either case
        ("%F0%9F%94%91", "\U0001f511"),
        ("a%20b", "a b"),
        ("%E2%82%AC%41", "\u20ac" + "A"),
    ],
)
def test_decode_uri_component(text: str, expected: str) -> None:
    assert decode_uri_component(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "%",
        "%4",
        "%zz",
        "%%41",
        "%C3",  # truncated
        "%C3%41",  # bad continuation
        "%C0%AF",  # overlong
        "%ED%A0%80",  # encoded surrogate
        "%F4%90%80%80",  # beyond U+10FFFF
        "%FF",
        "%C3\u00a9",  # continuation must be escaped
    ],
)
def test_decode_uri_component_throws_where_javascript_does(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        decode_uri_component(text)
    assert decode_value(text) == text  # tryDecode keeps the raw value whole


def test_value_from_text_processes_a_bare_value_like_a_pair() -> None:
    assert value_from_text(' "s%3Aa.b" ') == "s:a.b"
    assert value_from_text("s:a;b") == "s:a;b"  # a bare value is not split
