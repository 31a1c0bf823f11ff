"""The words of automatic replies, per language: what the ``out_of_office`` detector reads.

Pure data. Subject patterns are anchored at the start of the subject (an auto-reply
prefixes the subject it answers: "Automatic reply: Re: ..."); body phrases are looked for
near the start of the body and are the set formulas of out-of-office messages, not words
a person uses when answering ("I was out of office last week" is not one). Languages are
dateparser's codes, so the language a phrase was found in is the one its dates are read in.
Header rules follow RFC 3834 and Sisimai's list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Language:
    """How one language writes an automatic reply and the end of an absence."""

    code: str
    subject: tuple[str, ...]
    body: tuple[str, ...]
    inclusive_before: tuple[str, ...] = ()
    """Words right before a date that make it the last day away ("until and including")."""
    inclusive_after: tuple[str, ...] = ()
    """Words right after a date that make it the last day away ("jusqu'au 2 octobre inclus")."""
    date_order: str | None = "DMY"
    """How numeric dates are written (None: dateparser's default for the language)."""


LANGUAGES: tuple[Language, ...] = (
    Language(
        "en",
        subject=(
            r"auto(matic|mated)?[\s_-]*(reply|response|answer|respond)",
            r"autoreply",
            r"auto\s*:",
            r"out\s+of\s+(the\s+)?office",
            r"ooo\b",
            r"away\s+from\s+(the\s+|my\s+)?(office|desk)",
            r"(on\s+)?(annual\s+|parental\s+|maternity\s+)?(vacation|holiday|leave)\s*:",
        ),
        body=(
            r"i\s*(am|'m|\u2019m)\s+(currently\s+|now\s+)?(out\s+of\s+(the\s+)?office|away\s+from\s+"
            r"(the\s+|my\s+)?(office|desk)|on\s+(annual\s+|parental\s+|maternity\s+|paternity\s+"
            r"|sick\s+|holiday\s+)?(leave|vacation|holiday))",
            r"i\s+(will|shall)\s+be\s+(out\s+of\s+(the\s+)?office|away\s+from\s+(the\s+|my\s+)?"
            r"office|on\s+(annual\s+|parental\s+)?(leave|vacation|holiday))",
            r"(this\s+is\s+an\s+)?automat(ic|ed)\s+(reply|response)\b",
            r"i\s+(will|shall)\s+(respond|reply|get\s+back\s+to\s+you)\s+[^.]{0,40}(upon|on|after)"
            r"\s+my\s+return",
            r"i\s+(will\s+)?return\s+to\s+(the|my)\s+office",
            r"back\s+in\s+the\s+office\s+(on|from)",
        ),
        inclusive_before=(
            r"(until|till|up\s+to)\s+and\s+including",
            r"through",
            r"thru",
            r"to\s+and\s+including",
        ),
        inclusive_after=(r"inclusive", r"included"),
        date_order=None,
    ),
    Language(
        "de",
        subject=(
            r"automatische\s+antwort",
            r"abwesenheits(notiz|nachricht|meldung)",
            r"(abwesend|nicht\s+im\s+büro|außer\s+haus|urlaub)\s*:",
        ),
        body=(
            r"ich\s+bin\s+.{0,60}?(nicht\s+im\s+büro|abwesend|außer\s+haus|im\s+urlaub|"
            r"in\s+elternzeit|nicht\s+erreichbar)",
            r"abwesenheits(notiz|nachricht)",
            r"automatische\s+antwort",
            r"bin\s+ich\s+wieder\s+(im\s+büro|erreichbar|für\s+sie\s+da|da)",
            r"ich\s+bin\s+.{0,40}?wieder\s+(im\s+büro|erreichbar|da)",
        ),
        inclusive_before=(r"bis\s+(einschließlich|einschl\.?|inkl\.?|und\s+mit)",),
        inclusive_after=(r"einschließlich", r"inklusive"),
    ),
    Language(
        "fr",
        subject=(
            r"réponse\s+automatique",
            r"message\s+d['\u2019]absence",
            r"(absente?|absence|en\s+congés?)\s*:",
        ),
        body=(
            r"je\s+suis\s+(actuellement\s+)?(absente?|en\s+congés?|en\s+vacances|hors\s+du\s+bureau"
            r"|en\s+déplacement)",
            r"je\s+serai\s+de\s+retour",
            r"réponse\s+automatique",
            r"je\s+n['\u2019]aurai\s+pas\s+accès\s+à\s+mes\s+(e-?mails|courriels|messages)",
        ),
        inclusive_after=(r"inclus(ivement)?",),
    ),
    Language(
        "es",
        subject=(
            r"respuesta\s+automática",
            r"fuera\s+de\s+la\s+oficina",
            r"(ausente|de\s+vacaciones)\s*:",
        ),
        body=(
            r"(estoy|estaré|me\s+encuentro)\s+(actualmente\s+)?(fuera\s+de\s+la\s+oficina|ausente"
            r"|de\s+vacaciones|de\s+permiso)",
            r"respuesta\s+automática",
            r"(volveré|regresaré|estaré\s+de\s+vuelta|me\s+reincorporo)",
        ),
        inclusive_after=(r"inclusive", r"incluido"),
    ),
    Language(
        "pt",
        subject=(
            r"resposta\s+automática",
            r"fora\s+do\s+escritório",
            r"(ausente|ausência|de\s+férias)\s*:",
        ),
        body=(
            r"(estou|estarei|encontro-me)\s+(atualmente\s+)?(fora\s+do\s+escritório|ausente"
            r"|de\s+férias|de\s+licença)",
            r"resposta\s+automática",
            r"(estarei\s+de\s+volta|retorno\s+(no\s+dia|em|a)|regresso\s+(no\s+dia|em|a))",
        ),
        inclusive_after=(r"inclusive",),
    ),
    Language(
        "it",
        subject=(
            r"risposta\s+automatica",
            r"fuori\s+ufficio",
            r"(assente|in\s+ferie)\s*:",
        ),
        body=(
            r"(sono|sarò)\s+(attualmente\s+)?(fuori\s+(ufficio|sede)|assente|in\s+ferie"
            r"|in\s+vacanza)",
            r"risposta\s+automatica",
            r"(rientrerò|sarò\s+di\s+nuovo\s+in\s+ufficio|al\s+mio\s+rientro)",
        ),
        inclusive_after=(r"compreso", r"incluso"),
    ),
    Language(
        "nl",
        subject=(
            r"automatisch\s+antwoord",
            r"automatische\s+reactie",
            r"(afwezig|niet\s+aanwezig|buiten\s+kantoor)\s*:?",
        ),
        body=(
            r"ik\s+ben\s+.{0,50}?(afwezig|niet\s+aanwezig|niet\s+op\s+kantoor|met\s+vakantie"
            r"|op\s+vakantie|buiten\s+kantoor)",
            r"automatisch\s+antwoord",
            r"ben\s+ik\s+weer\s+(aanwezig|bereikbaar|op\s+kantoor)",
        ),
        inclusive_before=(r"tot\s+en\s+met", r"t/m"),
    ),
    Language(
        "sv",
        subject=(
            r"autosvar",
            r"automatiskt\s+svar",
            r"(frånvarande|ledig|semester)\s*:",
        ),
        body=(
            r"jag\s+är\s+(för\s+närvarande\s+)?(ledig|på\s+semester|frånvarande|borta|inte\s+på"
            r"\s+kontoret|tjänstledig|föräldraledig)",
            r"(autosvar|automatiskt\s+svar)",
            r"jag\s+är\s+(tillbaka|åter)",
        ),
        inclusive_before=(r"till\s+och\s+med", r"t\.?o\.?m\.?"),
    ),
    Language(
        "da",
        subject=(r"automatisk\s+svar", r"fraværende\s*:?"),
        body=(r"jeg\s+er\s+(på\s+ferie|fraværende|ikke\s+på\s+kontoret)",),
        inclusive_before=(r"til\s+og\s+med",),
    ),
    Language(
        "nb",
        subject=(r"automatisk\s+svar", r"fravær\s*:?"),
        body=(r"jeg\s+er\s+(på\s+ferie|borte|ikke\s+på\s+kontoret)",),
        inclusive_before=(r"til\s+og\s+med",),
    ),
    Language(
        "fi",
        subject=(r"automaattinen\s+vastaus", r"poissa\s+toimistolta"),
        body=(r"olen\s+(lomalla|poissa\s+toimistolta)",),
    ),
    Language(
        "pl",
        subject=(r"automatyczna\s+odpowiedź", r"nieobecn(y|a|ość)\s*:?"),
        body=(r"jestem\s+(obecnie\s+)?(nieobecn(y|a)|na\s+urlopie|poza\s+biurem)",),
    ),
    Language(
        "ja",
        subject=(r"自動返信", r"自動応答", r"不在"),
        body=(r"不在にしております", r"不在のため", r"休暇を(頂|いただ)いて", r"自動返信"),
        inclusive_after=(r"日?まで",),
        date_order=None,
    ),
    Language(
        "zh",
        subject=(r"自动回复", r"自動回覆"),
        body=(r"(我|本人)(目前)?(正在)?休假", r"不在办公室", r"自动回复"),
        inclusive_after=(r"日?(之前)?为止",),
        date_order=None,
    ),
)

DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "pt", "it", "nl", "sv")
"""Languages a date is read in when nothing says which the reply is written in."""

_SUBJECT_PREFIX = r"^[\s\[\(\"']*"


@dataclass(frozen=True, slots=True)
class Compiled:
    language: Language
    subject: re.Pattern[str]
    body: re.Pattern[str]
    inclusive_before: re.Pattern[str] | None
    inclusive_after: re.Pattern[str] | None


def _either(patterns: tuple[str, ...]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


def _compile(language: Language) -> Compiled:
    flags = re.IGNORECASE | re.UNICODE
    before = (
        re.compile(rf"(?:{_either(language.inclusive_before)})\W*(?:the\s+|den\s+|dem\s+)?$", flags)
        if language.inclusive_before
        else None
    )
    after = (
        re.compile(rf"^\W*(?:{_either(language.inclusive_after)})", flags)
        if language.inclusive_after
        else None
    )
    return Compiled(
        language=language,
        subject=re.compile(_SUBJECT_PREFIX + f"(?:{_either(language.subject)})", flags),
        body=re.compile(_either(language.body), flags),
        inclusive_before=before,
        inclusive_after=after,
    )


COMPILED: tuple[Compiled, ...] = tuple(_compile(language) for language in LANGUAGES)
BY_CODE: dict[str, Compiled] = {c.language.code: c for c in COMPILED}
