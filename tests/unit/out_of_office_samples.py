"""Real-world-like automatic replies (and genuine replies that look a little like them).

Modelled on what Exchange/Outlook, Gmail, Zimbra, Lotus Notes, Apple Mail and helpdesk
tools send, in the languages Offramp reads. Every sample is received at ``RECEIVED``
(Thursday 10 September 2026, 09:00 UTC); ``back`` is the day its sender is back (None: the
reply gives no date Offramp can use, so the fallback applies).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

RECEIVED = datetime(2026, 9, 10, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Sample:
    id: str
    subject: str | None
    body: str | None
    headers: tuple[tuple[str, str], ...] = ()
    back: date | None = None
    language: str | None = None


EXCHANGE = (("Auto-Submitted", "auto-generated"), ("X-Auto-Response-Suppress", "All"))
GMAIL = (("Auto-Submitted", "auto-replied"), ("Precedence", "bulk"))

AUTO_REPLIES: tuple[Sample, ...] = (
    Sample(
        "en-exchange-until-and-including",
        "Automatic reply: Quick question about your onboarding",
        "Thank you for your email. I am out of the office until and including 30 September "
        "with limited access to email. For urgent matters please contact support@acme.com.",
        EXCHANGE,
        date(2026, 10, 1),
        "en",
    ),
    Sample(
        "en-gmail-vacation-return-on",
        "Re: Quick question",
        "Hi,\n\nI'm currently on annual leave and will return to the office on Monday, "
        "5 October.\n\nBest,\nJane",
        GMAIL,
        date(2026, 10, 5),
        "en",
    ),
    Sample(
        "en-out-of-office-subject-us-date",
        "Out of Office: Re: Pricing",
        "I am out of the office from 9/8 through 9/18. I will respond to your message upon "
        "my return.",
        (),
        date(2026, 9, 19),
        "en",
    ),
    Sample(
        "en-ooo-back-in-the-office",
        "OOO",
        "Hello! I'm away from my desk at a conference and will be back in the office on "
        "September 21st, 2026.",
        (),
        date(2026, 9, 21),
        "en",
    ),
    Sample(
        "en-x-autoreply-no-date",
        "Re: Your demo",
        "This is an automated response: I am travelling with limited connectivity.",
        (("X-Autoreply", "yes"),),
        None,
        "en",
    ),
    Sample(
        "en-precedence-auto-reply-header",
        "Re: Your demo",
        "Thanks for reaching out, a colleague will get back to you shortly.",
        (("Precedence", "auto_reply"),),
        None,
    ),
    Sample(
        "en-empty-return-path",
        "Re: Your demo",
        "Your message has been received.",
        (("Return-Path", "<>"),),
        None,
    ),
    Sample(
        "en-x-precedence-junk",
        "Re: hello",
        "Thank you!",
        (("X-Precedence", "junk"),),
        None,
    ),
    Sample(
        "en-auto-prefix-parental-leave",
        "Auto: Re: Follow-up",
        "I am on parental leave until 2 November 2026. Please contact my colleague Sam.",
        (),
        date(2026, 11, 2),
        "en",
    ),
    Sample(
        "en-body-only-plain-text",
        "Re: Follow-up",
        "I am currently out of the office and will return on 14 September. I will reply to "
        "your email on my return.",
        (),
        date(2026, 9, 14),
        "en",
    ),
    Sample(
        "de-abwesenheitsnotiz-bis-einschliesslich",
        "Abwesenheitsnotiz: Ihr Angebot",
        "Vielen Dank für Ihre Nachricht. Ich bin bis einschließlich 30. September nicht im "
        "Büro. Ab dem 1. Oktober bin ich wieder erreichbar.",
        (("Auto-Submitted", "auto-replied"),),
        date(2026, 10, 1),
        "de",
    ),
    Sample(
        "de-automatische-antwort-numeric",
        "Automatische Antwort: Ihr Angebot",
        "Guten Tag, ich bin derzeit im Urlaub und ab dem 14.10.2026 wieder im Büro.",
        (),
        date(2026, 10, 14),
        "de",
    ),
    Sample(
        "de-body-only-elternzeit",
        "AW: Termin",
        "Ich bin bis zum 15. Januar 2027 in Elternzeit. In dringenden Fällen wenden Sie "
        "sich bitte an meine Kollegin.",
        (),
        date(2027, 1, 15),
        "de",
    ),
    Sample(
        "de-short-dotted-date",
        "Abwesend: Termin",
        "Ich bin bis einschl. 2.10. im Urlaub. Version 2.3 unseres Produkts ist da!",
        (),
        date(2026, 10, 3),
        "de",
    ),
    Sample(
        "fr-reponse-automatique-inclus",
        "Réponse automatique : Votre offre",
        "Bonjour, je suis absent jusqu'au 2 octobre inclus. Je n'aurai pas accès à mes e-mails.",
        (),
        date(2026, 10, 3),
        "fr",
    ),
    Sample(
        "fr-de-retour-le",
        "Absence : Re: Votre offre",
        "Je suis actuellement en congés. Je serai de retour le 28 septembre.",
        (),
        date(2026, 9, 28),
        "fr",
    ),
    Sample(
        "es-respuesta-automatica",
        "Respuesta automática: Su propuesta",
        "Gracias por su mensaje. Estoy fuera de la oficina hasta el 15 de octubre, con "
        "acceso limitado al correo.",
        (),
        date(2026, 10, 15),
        "es",
    ),
    Sample(
        "es-volvere-numeric",
        "Re: Propuesta",
        "Estoy de vacaciones. Volveré el 21/09/2026.",
        (("Auto-Submitted", "auto-replied"),),
        date(2026, 9, 21),
        "es",
    ),
    Sample(
        "pt-resposta-automatica-inclusive",
        "Resposta automática: Proposta",
        "Olá! Estou de férias até 20 de setembro inclusive. Retorno no dia 21/09.",
        (),
        date(2026, 9, 21),
        "pt",
    ),
    Sample(
        "pt-ausente",
        "Ausente: Re: Proposta",
        "Estou ausente do escritório e estarei de volta em 5 de outubro.",
        (),
        date(2026, 10, 5),
        "pt",
    ),
    Sample(
        "it-risposta-automatica-compreso",
        "Risposta automatica: La vostra offerta",
        "Buongiorno, sono fuori ufficio fino al 25 settembre compreso.",
        (),
        date(2026, 9, 26),
        "it",
    ),
    Sample(
        "it-rientrero",
        "Fuori ufficio",
        "Sono in ferie, rientrerò il 1 ottobre.",
        (),
        date(2026, 10, 1),
        "it",
    ),
    Sample(
        "nl-automatisch-antwoord-tot-en-met",
        "Automatisch antwoord: Uw offerte",
        "Bedankt voor uw bericht. Ik ben afwezig tot en met 18 september. Vanaf 19 "
        "september ben ik weer bereikbaar.",
        (),
        date(2026, 9, 19),
        "nl",
    ),
    Sample(
        "nl-afwezig-vakantie",
        "Afwezig: Re: offerte",
        "Ik ben met vakantie tot 2 oktober.",
        (),
        date(2026, 10, 2),
        "nl",
    ),
    Sample(
        "sv-autosvar-till-och-med",
        "Autosvar: Ert erbjudande",
        "Hej! Jag är på semester till och med den 22 september.",
        (),
        date(2026, 9, 23),
        "sv",
    ),
    Sample(
        "sv-tillbaka",
        "Re: Erbjudande",
        "Jag är ledig och tillbaka den 5 oktober.",
        (("X-Autorespond", "true"),),
        date(2026, 10, 5),
        "sv",
    ),
    Sample(
        "da-automatisk-svar",
        "Automatisk svar: Tilbud",
        "Jeg er på ferie til og med 20. september.",
        (),
        date(2026, 9, 21),
        "da",
    ),
    Sample(
        "ja-jidou-henshin",
        "自動返信: ご提案について",
        "誠に勝手ながら、10月1日まで不在にしております。",
        (),
        date(2026, 10, 2),
        "ja",
    ),
    Sample(
        "pl-automatyczna-odpowiedz",
        "Automatyczna odpowiedź: Oferta",
        "Jestem na urlopie do 30 września.",
        (),
        date(2026, 9, 30),
        "pl",
    ),
    Sample(
        "en-quoted-date-is-not-a-return-date",
        "Automatic reply: Re: Pricing",
        "I'm out of the office with no return date set.\n\nOn Tue, 8 Sep 2026 at 10:02, "
        "Offramp <hello@offramp.example> wrote:\n> Hi Jane",
        (),
        None,
        "en",
    ),
)

GENUINE_REPLIES: tuple[Sample, ...] = (
    Sample("plain-yes", "Re: Quick question", "Sounds good, let's book a call on Tuesday."),
    Sample("not-interested", "Re: Quick question", "Please remove me from your list."),
    Sample(
        "was-out-of-office",
        "Re: Follow-up",
        "Sorry for the late answer, I was out of office last week. Yes, 20 September works.",
    ),
    Sample(
        "suppress-header-only",
        "RE: Follow-up",
        "Thanks, forwarding to my colleague.",
        (("X-Auto-Response-Suppress", "All"), ("Auto-Submitted", "no")),
    ),
    Sample("mailing-list-precedence", "Re: Newsletter", "Interesting!", (("Precedence", "list"),)),
    Sample(
        "subject-mentions-automatic-replies",
        "Re: Automatic replies are annoying",
        "Agreed, let's switch them off.",
    ),
    Sample(
        "german-person",
        "AW: Angebot",
        "Danke, ich bin nächste Woche wieder im Land, dann telefonieren wir.",
    ),
    Sample(
        "french-person",
        "RE: Votre offre",
        "Merci, nous sommes intéressés. Pouvez-vous m'appeler le 2 octobre ?",
    ),
    Sample(
        "vacation-plans",
        "Re: Team offsite",
        "We are planning our holiday party, can you send a quote?",
    ),
    Sample("empty", None, None),
)
