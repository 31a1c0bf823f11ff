"""How many SMS segments a text takes, exactly as GSM 03.38 / 23.038 and concatenated SMS
(a 6-octet user data header per part) make it. Pure: no I/O.

- **GSM-7** when every character is in the default alphabet or its extension table: a
  single message holds 160 septets, each part of a longer one 153. The extension table's
  characters (form feed ``^ { } \\ [ ~ ] |`` and ``€``) are sent as ESC + the character,
  two septets, and the pair is never split across two parts (a part then holds 152).
- **UCS-2** (UTF-16 on every current handset) as soon as one character is outside GSM-7:
  70 code units single, 67 per part. A character outside the Basic Multilingual Plane
  (most emoji) is a surrogate pair, two units, never split across two parts.

Counting is done by packing the parts greedily, as handsets and providers do, so a text
whose two-unit characters fall on part boundaries may take one part more than its unit
count divided by 153 (or 67) says.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
"""The GSM 03.38 default alphabet (127 characters: 0x1B is the escape to the extension)."""

GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
"""The extension table characters a handset shows: each is ESC + one septet, two in all."""


class Encoding(enum.StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class Limits:
    single: int
    """Units one unsplit message holds."""
    per_part: int
    """Units each part of a concatenated message holds (its header takes the rest)."""


LIMITS = {Encoding.GSM7: Limits(160, 153), Encoding.UCS2: Limits(70, 67)}


@dataclass(frozen=True, slots=True)
class SegmentCount:
    """What a text costs to send as SMS."""

    encoding: Encoding
    units: int
    """Septets (GSM-7) or UTF-16 code units (UCS-2) of the whole text."""
    segments: int


def encoding_of(text: str) -> Encoding:
    """GSM-7 when every character is in its alphabet or extension, else UCS-2."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        return Encoding.GSM7
    return Encoding.UCS2


def unit_width(char: str, encoding: Encoding) -> int:
    """Units ``char`` takes: 2 for a GSM-7 extension character or a UTF-16 surrogate pair."""
    if encoding is Encoding.GSM7:
        return 2 if char in GSM7_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


def split(text: str) -> list[str]:
    """The parts ``text`` is sent as (one for a text that fits a single message; one for
    the empty text, which still costs a message). No character is cut in two."""
    encoding = encoding_of(text)
    limits = LIMITS[encoding]
    if sum(unit_width(c, encoding) for c in text) <= limits.single:
        return [text]
    parts: list[str] = []
    start, used = 0, 0
    for index, char in enumerate(text):
        width = unit_width(char, encoding)
        if used + width > limits.per_part:
            parts.append(text[start:index])
            start, used = index, 0
        used += width
    parts.append(text[start:])
    return parts


def count(text: str) -> SegmentCount:
    """The encoding, units and segments of ``text`` sent as one SMS."""
    encoding = encoding_of(text)
    units = sum(unit_width(c, encoding) for c in text)
    return SegmentCount(encoding, units, len(split(text)))
