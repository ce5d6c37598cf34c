"""Scientific-name normalisation: verbatim labels from many sources to one canonical form.

Sources write names in many ways ("Quercus robur L.", "Puma concolor (Linnaeus, 1771)",
"<i>Mentha &times; piperita</i>", "QUERCUS ROBUR", "Aedes (Ochlerotatus) vexans",
"Lamium_galeobdolon", "not_classified"). The canonical form is what the GBIF backbone calls
`canonicalName`: genus, epithet and infraspecific epithet, no authorship, no rank marker, no
hybrid sign. Matching compares canonical names case-insensitively (`match_key`).

Plainly written names ("Genus epithet Author, 1900") take a regular-expression fast path.
The rest go to GBIF's own parser (`gbif-name-parser`, the Rust port of org.gbif.nameparser)
for genus, epithet and infraspecific epithet, and to our token reader for what the project
flags (cf., aff., sp., hybrids, hybrid formulas, subgenus, placeholders). bench/name_parsers.py
compares the two parsers on real names. Two rules sit on top of both: a word with diacritics
(`hübner`) is an author, not an epithet (epithets are Latin letters; a diaeresis after a vowel
is allowed), and a third lower-case word without a rank marker (`linnaeus`, `girard`) is only
*maybe* an infraspecific epithet (`infra_marked=False`): the resolver calls it one only when
the trinomial exists in the backbone.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from dataclasses import dataclass, replace

import nameparser as gbif_nameparser

PLACEHOLDERS = frozenset(
    {
        "",
        "-",
        "--",
        "?",
        "na",
        "n/a",
        "nan",
        "none",
        "null",
        "nil",
        "unknown",
        "unknow",
        "not classified",
        "not_classified",
        "unclassified",
        "unidentified",
        "undetermined",
        "indet",
        "indet.",
        "incertae sedis",
        "no data",
        "not available",
    }
)
"""Values that mean "no label" (compared lower-case, underscores read as spaces)."""

_INFRA_MARKERS = {
    "subsp.": "subspecies",
    "subsp": "subspecies",
    "ssp.": "subspecies",
    "ssp": "subspecies",
    "var.": "variety",
    "var": "variety",
    "subvar.": "subvariety",
    "f.": "form",
    "fo.": "form",
    "forma": "form",
    "morph": "morph",
    "morph.": "morph",
}
_GENUS_ONLY = {"sp.": "sp", "sp": "sp", "spp.": "spp", "spp": "spp", "sp.nov.": "sp"}
_QUALIFIERS = {"cf.": "cf", "cf": "cf", "aff.": "aff", "aff": "aff", "nr.": "aff", "near": "aff"}
_HYBRID_SIGNS = {"x", "×", "\u2a09"}
# Particles that begin an authorship ("Quercus robur de Candolle", "Vicia faba van ..."), and
# the words that join authors ("Seaton ex Girard", "Hook.f. et Thomson", "Rich. in DC.").
_AUTHOR_PARTICLES = frozenset(
    {"de", "des", "van", "von", "der", "den", "du", "la", "le", "del", "da", "do", "dos", "d'"}
    | {"zur", "ex", "et", "in"}
)
# Lower-case words a plain authorship may hold ("Poda ex Linnaeus", "L. f."); any other
# lower-case word after the epithet may be an epithet or a marker: the general parser decides.
_PLAIN_AUTHOR_WORDS = _AUTHOR_PARTICLES | {"al.", "al", "&", "y", "apud", "fil.", "filius"}
_TRAILING_PUNCT = ".,;:"
_DIAERESIS_VOWELS = "aeiouy"

_TAG = re.compile(r"<[^>]*>")
_WORD = re.compile(r"^[^\W\d_]+(?:-[^\W\d_]+)*$")  # letters, inner hyphens ("novae-angliae")
_SUBGENUS = re.compile(r"^\(([^\W\d_]+)\)$")


@dataclass(frozen=True)
class ParsedName:
    """A name split into parts; `canonical` is None when the input carries no name."""

    canonical: str | None
    genus: str | None = None  # set for binomials and "Genus sp."; None for bare uninomials
    epithet: str | None = None
    infraspecific: str | None = None
    rank_hint: str | None = None  # species|subspecies|variety|form|genus|family|None
    authorship: str | None = None
    flags: tuple[str, ...] = ()  # sorted: hybrid, cf, aff, sp, spp, subgenus, placeholder ...
    # False for a trinomial without rank marker ("Canis lupus familiaris", "Anax junius
    # linnaeus"): the third word may be an author; the resolver asks the backbone.
    infra_marked: bool = True

    @property
    def binomial(self) -> str | None:
        if self.genus and self.epithet:
            return f"{self.genus} {self.epithet}"
        return None


_QUOTES = "\"'\u2018\u2019\u201c\u201d"


def _unwrap_quotes(s: str) -> str:
    """Drop one pair of quotes around the whole text ('"Oma'o"' -> "Oma'o"); a quote that is
    part of the text ("'Oma'o", "Persicaria 'São Paulo'") stays."""
    while len(s) >= 2 and s[0] in _QUOTES and s[-1] in _QUOTES:
        pair = {s[0], s[-1]}
        if not (len(pair) == 1 or pair in ({"\u2018", "\u2019"}, {"\u201c", "\u201d"})):
            break
        inner = s[1:-1]
        if any(q in inner for q in pair):  # the quotes belong to words inside, not around
            break
        s = inner.strip()
    return s


def clean_text(raw: str | None) -> str | None:
    """Unescape HTML, drop tags, normalise Unicode and whitespace; placeholders become None.
    Quotes are removed only as a pair around the whole text, so inner punctuation stays."""
    if raw is None:
        return None
    s = html.unescape(str(raw))
    s = _TAG.sub(" ", s)
    s = unicodedata.normalize("NFC", s)
    s = s.replace("\u00a0", " ").replace("_", " ")
    s = _unwrap_quotes(" ".join(s.split()))
    if s.lower() in PLACEHOLDERS or s.lower().replace(" ", "_") in PLACEHOLDERS:
        return None
    return s


@functools.lru_cache(maxsize=1 << 16)  # few distinct values (Animalia, Insecta ...), many rows
def normalize_rank_value(raw: str | None) -> str | None:
    """A verbatim rank label (kingdom..genus) cleaned: capitalised first letter, None if empty."""
    s = clean_text(raw)
    if s is None:
        return None
    first = s.split()[0]
    if not _WORD.match(first):
        return s
    return first[:1].upper() + first[1:].lower() if first.isupper() or first.islower() else first


def match_key(name: str | None) -> str | None:
    """The key names are compared by: lower-cased, single-spaced."""
    if name is None:
        return None
    s = " ".join(name.split()).lower()
    return s or None


def _latin_letters(word: str) -> bool:
    """Epithets are Latin letters: a diacritic makes a word a surname ("hübner", "müller"),
    except a diaeresis on a vowel after a vowel ("aëdes"-style spellings)."""
    if word.isascii():
        return True
    for i, ch in enumerate(word):
        if ch.isascii():
            continue
        base = unicodedata.normalize("NFD", ch)
        if len(base) != 2 or base[1] != "\u0308" or i == 0 or word[i - 1] not in _DIAERESIS_VOWELS:
            return False
    return True


def _is_epithet(token: str) -> bool:
    return (
        len(token) > 1
        and bool(_WORD.match(token))
        and token.islower()
        and token not in _AUTHOR_PARTICLES
        and _latin_letters(token)
    )


def _strip_trailing_punct(token: str) -> str:
    """ "robur." -> "robur" (a lower-case word that ends a sentence or a list item); rank
    markers keep their dot ("var.", "sp.")."""
    word = token.rstrip(_TRAILING_PUNCT)
    if word != token and word.islower() and _WORD.match(word) and token.lower() not in _NOT_WORDS:
        return word
    return token


def _strip_hybrid_prefix(token: str) -> tuple[str, bool]:
    if token[:1] in ("×", "\u2a09") and len(token) > 1:
        return token[1:], True
    return token, False


def _guess_uninomial_rank(name: str) -> str | None:
    if name.endswith(("idae", "aceae")):
        return "family"
    if name.endswith(("ales", "iformes")):
        return "order"
    return None


# The shapes most names come in, parsed without the general parser: "Genus", "Genus epithet",
# "Genus epithet Author, 1900" / "(Author, 1900)" in plain ASCII, single-spaced.
_PLAIN_BINOMIAL = re.compile(
    r"([A-Z][a-z]+) ([a-z]+(?:-[a-z]+)*)(?: ([A-Z(][^\s&<>_\"']*(?: [^\s&<>_\"']+)*))?"
)
_PLAIN_UNINOMIAL = re.compile(r"[A-Z][a-z]+")
_NOT_EPITHETS = frozenset(
    {*_INFRA_MARKERS, *_GENUS_ONLY, *_QUALIFIERS, *_HYBRID_SIGNS, *_AUTHOR_PARTICLES}
)
_NOT_WORDS = frozenset({*_INFRA_MARKERS, *_GENUS_ONLY, *_QUALIFIERS})


def _from_parts(
    genus: str,
    epithet: str | None,
    infra: str | None,
    rank_hint: str | None,
    marked: bool,
    authorship: str | None,
    flags: set[str],
) -> ParsedName:
    """The name made of parsed parts. A one-word name guesses its rank and sets its genus only
    when marked cf. or aff."""
    if epithet is None:
        return ParsedName(
            canonical=genus,
            genus=genus if flags & {"cf", "aff"} else None,
            rank_hint=_guess_uninomial_rank(genus),
            authorship=authorship,
            flags=tuple(sorted(flags)),
        )
    return ParsedName(
        canonical=" ".join([genus, epithet] + ([infra] if infra else [])),
        genus=genus,
        epithet=epithet,
        infraspecific=infra,
        rank_hint=rank_hint,
        authorship=authorship,
        flags=tuple(sorted(flags)),
        infra_marked=marked,
    )


def _plain_authorship(authorship: str) -> bool:
    """True when no word of the authorship could be an epithet or a rank marker."""
    for token in authorship.split():
        if token[:1].islower() and token.lower() not in _PLAIN_AUTHOR_WORDS:
            return False
    return True


def _plain_name(raw: str) -> ParsedName | None:
    """The parse of a plainly written name, or None when the general parser must decide."""
    if not raw.isascii():
        return None
    m = _PLAIN_BINOMIAL.fullmatch(raw)
    if m is not None:
        genus, epithet, authorship = m.groups()
        if len(epithet) < 2 or epithet in _NOT_EPITHETS:
            return None
        if authorship is not None and not _plain_authorship(authorship):
            return None
        if f"{genus} {epithet}".lower() in PLACEHOLDERS:
            return None
        return ParsedName(
            canonical=f"{genus} {epithet}",
            genus=genus,
            epithet=epithet,
            rank_hint="species",
            authorship=authorship,
        )
    if _PLAIN_UNINOMIAL.fullmatch(raw) and raw.lower() not in PLACEHOLDERS:
        return ParsedName(canonical=raw, rank_hint=_guess_uninomial_rank(raw))
    return None


@functools.lru_cache(maxsize=1 << 18)  # names repeat across sources and rank contexts
def normalize_name(raw: str | None) -> ParsedName:
    """Parse a verbatim scientific name into its canonical form and parts.

    Never raises: text that is not a name gives `canonical=None` with a flag saying why
    (`empty`, `placeholder` or `unparsed`).
    """
    if isinstance(raw, str):
        plain = _plain_name(raw)
        if plain is not None:
            return plain
    return _parse_name(raw)


def _parse_name(raw: str | None) -> ParsedName:
    """The general parser: our token reader for flags and shapes, GBIF's parser for the parts."""
    ours = _read_tokens(raw)
    if ours.canonical is None and "unparsed" not in ours.flags:
        return ours  # empty or a placeholder
    if {"sp", "spp", "hybrid_formula"} & set(ours.flags):
        return ours
    text = _shouting(clean_text(raw))
    gbif = _gbif_parts(text)
    if gbif is None:
        return ours
    genus, epithet, infra, rank_hint, marked, authorship, hybrid = gbif
    if ours.genus is None and epithet is None and genus == ours.canonical:
        # a bare uninomial: our rank guess and flags stand
        return replace(ours, authorship=ours.authorship or authorship)
    if (genus, epithet, infra) == (ours.genus, ours.epithet, ours.infraspecific):
        return replace(ours, infra_marked=ours.infra_marked and marked)
    flags = set(ours.flags) | ({"hybrid"} if hybrid else set())
    return _from_parts(genus, epithet, infra, rank_hint, marked, authorship, flags)


def _shouting(text: str) -> str:
    """ "QUERCUS ROBUR" -> "quercus robur": capitals throughout are shouting, not authorship."""
    return text.lower() if text.isupper() and len(text) > 1 else text


_GBIF_RANKS = {
    "SPECIES": "species",
    "SUBSPECIES": "subspecies",
    "INFRASPECIFIC_NAME": "subspecies",
    "VARIETY": "variety",
    "SUBVARIETY": "subvariety",
    "FORM": "form",
    "MORPH": "morph",
}


def _gbif_parts(text: str) -> tuple | None:
    """(genus, epithet, infraspecific, rank hint, marked?, authorship, hybrid?) from GBIF's
    parser, or None when it reads no scientific name. Epithets that are not Latin words
    (a surname with diacritics, `ex`) are read as authorship."""
    try:
        p = gbif_nameparser.parse(text)
    except gbif_nameparser.UnparsableNameError:
        return None
    if isinstance(p, gbif_nameparser.Informal):
        return None
    genus = p.genus or p.uninomial
    if not genus or not _WORD.match(genus):
        return None
    genus = genus[:1].upper() + genus[1:].lower() if genus.isupper() else genus
    epithet, infra = p.specific_epithet, p.infraspecific_epithet
    if epithet is not None and not _is_epithet(epithet):
        epithet = infra = None
    if infra is not None and not _is_epithet(infra):
        infra = None
    tokens = {t.lower() for t in text.split()}
    marked = infra is None or bool(tokens & set(_INFRA_MARKERS))
    rank_hint = None
    if epithet is not None:
        rank_hint = _GBIF_RANKS.get(p.rank, "species") if infra else "species"
    return genus, epithet, infra, rank_hint, marked, p.authorship_complete(), bool(p.notho)


def _read_tokens(raw: str | None) -> ParsedName:
    """Our own reader of every shape `normalize_name` accepts (flags, genus-only forms)."""
    if raw is None or not str(raw).strip():
        return ParsedName(canonical=None, flags=("empty",))
    text = clean_text(raw)
    if text is None:
        return ParsedName(canonical=None, flags=("placeholder",))
    flags: set[str] = set()
    text = _shouting(text)
    tokens = text.split()
    # Leading hybrid sign: "× Triticosecale", "×Triticosecale", "x Triticosecale".
    if tokens[0] in _HYBRID_SIGNS and len(tokens) > 1:
        tokens = tokens[1:]
        flags.add("hybrid")
    head, hybrid = _strip_hybrid_prefix(tokens[0])
    if hybrid:
        flags.add("hybrid")
    if not _WORD.match(head):
        return ParsedName(canonical=None, flags=tuple(sorted(flags | {"unparsed"})))
    genus = head[:1].upper() + head[1:].lower()
    rest = tokens[1:]
    i = 0
    # "Aedes (Ochlerotatus) vexans": a subgenus sits between genus and epithet.
    if len(rest) > 1 and _SUBGENUS.match(rest[0]) and _is_epithet(rest[1]):
        flags.add("subgenus")
        i += 1
    epithet = infra = rank_hint = None
    marked = True
    while i < len(rest):  # qualifiers and hybrid signs before the epithet
        low = rest[i].lower()
        if low in _QUALIFIERS:
            flags.add(_QUALIFIERS[low])
            i += 1
        elif low in _HYBRID_SIGNS:
            flags.add("hybrid")
            i += 1
        else:
            break
    if i < len(rest) and rest[i].lower() in _GENUS_ONLY:
        flags.add(_GENUS_ONLY[rest[i].lower()])
        return ParsedName(
            canonical=genus,
            genus=genus,
            rank_hint="genus",
            authorship=None,
            flags=tuple(sorted(flags)),
        )
    if i < len(rest):
        rest[i] = _strip_trailing_punct(rest[i])  # "Quercus robur." -> robur
        token, hybrid = _strip_hybrid_prefix(rest[i])
        if _is_epithet(token):
            epithet = token
            flags.update({"hybrid"} if hybrid else set())
            rank_hint = "species"
            i += 1
    if epithet is not None and i < len(rest):
        rest[i] = _strip_trailing_punct(rest[i])
        if i + 1 < len(rest):
            rest[i + 1] = _strip_trailing_punct(rest[i + 1])
        low = rest[i].lower()
        if low in _INFRA_MARKERS and i + 1 < len(rest) and _is_epithet(rest[i + 1]):
            infra, rank_hint = rest[i + 1], _INFRA_MARKERS[low]
            i += 2
        elif _is_epithet(rest[i]):  # zoological trinomial "Canis lupus familiaris"
            infra, rank_hint, marked = rest[i], "subspecies", False
            i += 1
    # "Quercus robur x Quercus petraea": a hybrid formula names no single taxon; keep the genus.
    if epithet is not None and i < len(rest) and rest[i].lower() in _HYBRID_SIGNS:
        flags.add("hybrid_formula")
        return ParsedName(
            canonical=genus, genus=genus, rank_hint="genus", flags=tuple(sorted(flags))
        )
    authorship = " ".join(rest[i:]) or None
    return _from_parts(genus, epithet, infra, rank_hint, marked, authorship, flags)
