"""SMS segment counting (GSM 03.38): GSM-7 with its extension table counting two and never
split, UCS-2 as soon as one character is outside GSM-7, surrogate pairs never split."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.messaging.segments import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    LIMITS,
    Encoding,
    count,
    encoding_of,
    split,
    unit_width,
)

pytestmark = pytest.mark.unit

GSM, UCS = Encoding.GSM7, Encoding.UCS2
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # man ZWJ woman ZWJ girl

KNOWN = [
    # text, encoding, units, segments, why
    ("", GSM, 0, 1, "an empty text still costs one message"),
    ("a" * 160, GSM, 160, 1, "GSM-7 single message holds 160"),
    ("a" * 161, GSM, 161, 2, "one more septet: two parts of 153"),
    ("a" * 306, GSM, 306, 2, "two full parts"),
    ("a" * 307, GSM, 307, 3, "one septet over two full parts"),
    ("€" * 80, GSM, 160, 1, "extension characters count two: 80 of them fill one message"),
    ("€" * 81, GSM, 162, 2, "76 escaped pairs (152 septets) per part"),
    ("a" * 159 + "€", GSM, 161, 2, "the escape pair does not fit the first part's last septet"),
    ("a" * 152 + "€" + "a" * 152, GSM, 306, 3, "a pair at the boundary moves whole: 152|153|1"),
    ("a" * 151 + "€" + "a" * 153, GSM, 306, 2, "a pair ending exactly at the boundary"),
    ("[]{}\\^~|\f", GSM, 18, 1, "every extension character counts two"),
    ("Hello {name}, 50% off!", GSM, 24, 1, "braces are escaped"),
    ("Ça coûte 5€", UCS, 11, 1, "û is not GSM-7: the whole text is UCS-2"),
    ("Voilà: déjà Ägypten, Ñandú?", UCS, 27, 1, "ú is not GSM-7"),
    ("à é è ù ì ò Ç Ø Å Ä Ö Ñ Ü ß", GSM, 27, 1, "accents of the default alphabet stay GSM-7"),
    ("ç", UCS, 1, 1, "only the capital Ç is in GSM-7"),
    ("ΔΦΓΛΩΠΨΣΘΞ", GSM, 10, 1, "capital Greek letters of the default alphabet"),
    ("\u03b1", UCS, 1, 1, "a small Greek letter is not"),
    ("`", UCS, 1, 1, "backtick is outside GSM-7"),
    ("tab\there", UCS, 8, 1, "tab is outside GSM-7"),
    ("\r\n", GSM, 2, 1, "CR and LF are in the default alphabet"),
    ("á" * 70, UCS, 70, 1, "UCS-2 single message holds 70"),
    ("á" * 71, UCS, 71, 2, "then parts of 67"),
    ("á" * 134, UCS, 134, 2, "two full UCS-2 parts"),
    ("á" * 135, UCS, 135, 3, "one unit over"),
    ("😀", UCS, 2, 1, "an emoji is a surrogate pair: two units"),
    ("😀" * 35, UCS, 70, 1, "35 emoji fill one message"),
    ("😀" * 36, UCS, 72, 2, "33 emoji (66 units) per part: a pair is never split"),
    ("a" * 66 + "😀", UCS, 68, 1, "an emoji makes the text UCS-2; 68 units fit one"),
    ("a" * 66 + "😀" + "a" * 4, UCS, 72, 2, "the pair moves to the second part: 66|6"),
    ("a" * 66 + "😀" + "a" * 66, UCS, 134, 3, "134 units but 3 parts: 66|67|1"),
    (FAMILY, UCS, 8, 1, "a ZWJ family: three pairs and two joiners"),
    ("Привет, мир!", UCS, 12, 1, "Cyrillic"),
    ("你好" * 35, UCS, 70, 1, "CJK: one unit each"),
]


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [case[:4] for case in KNOWN],
    ids=[case[4] for case in KNOWN],
)
def test_known_texts_take_the_segments_gsm_03_38_gives_them(
    text: str, encoding: Encoding, units: int, segments: int
) -> None:
    counted = count(text)
    assert (counted.encoding, counted.units, counted.segments) == (encoding, units, segments)


def test_the_default_alphabet_has_127_characters_and_the_extension_ten() -> None:
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


GSM_TEXT = st.text(alphabet=st.sampled_from(sorted(GSM7_BASIC | GSM7_EXTENSION)), max_size=700)
ANY_TEXT = st.text(max_size=400) | GSM_TEXT


def _units(text: str, encoding: Encoding) -> int:
    return sum(unit_width(c, encoding) for c in text)


@given(ANY_TEXT)
def test_the_parts_put_back_together_are_the_text_and_each_fits_its_part(text: str) -> None:
    parts = split(text)
    encoding = encoding_of(text)
    limits = LIMITS[encoding]
    assert "".join(parts) == text
    assert count(text).segments == len(parts)
    if len(parts) == 1:
        assert _units(text, encoding) <= limits.single
    else:
        assert all(0 < _units(p, encoding) <= limits.per_part for p in parts)
        # No part could have taken the next part's first character.
        for part, following in itertools.pairwise(parts):
            assert _units(part + following[0], encoding) > limits.per_part


@given(ANY_TEXT)
def test_no_text_takes_fewer_segments_than_its_units_allow(text: str) -> None:
    counted = count(text)
    limits = LIMITS[counted.encoding]
    if counted.units > limits.single:
        assert counted.segments >= math.ceil(counted.units / limits.per_part)


@given(ANY_TEXT, st.characters())
def test_appending_a_character_never_makes_a_text_cheaper(text: str, char: str) -> None:
    assert count(text + char).segments >= count(text).segments


@given(st.text(alphabet=st.sampled_from(sorted(GSM7_BASIC)), max_size=1000))
def test_plain_gsm7_text_takes_160_then_153_septets_a_part(text: str) -> None:
    expected = 1 if len(text) <= 160 else math.ceil(len(text) / 153)
    assert count(text).segments == expected


@given(GSM_TEXT, st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF))
def test_one_character_outside_gsm7_turns_the_whole_text_ucs2(text: str, char: str) -> None:
    counted = count(text + char)
    assert counted.encoding is Encoding.UCS2
    assert counted.units == len(text) + 2
