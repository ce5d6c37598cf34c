"""The words treeoflife writes into its tables, defined once: sources, statuses and reasons.

Every member is a `StrEnum` (a `Word`) whose value IS the string the tables hold, so a member
can stand wherever that string stood and every file stays byte-identical. Each `Reason` names
the stage that records it and says in one line what it means; `schemas/reasons.json` publishes
that list (`python -m treeoflife.schema_export`) and a test checks every reason of a built
release is one.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Word(StrEnum):
    """A vocabulary word: it prints, formats, compares, hashes and reprs as its string, so a
    member inside a dict, a tuple or a `%r` log line reads exactly as the string did. (YAML's
    safe dumper still wants `.value`: it accepts no str subclass.)"""

    __repr__ = str.__repr__


class Source(Word):
    """The image sources (the `source` column, the first part of every key)."""

    INAT21 = "inat21"
    BIOSCAN = "bioscan"
    EOL = "eol"


class Status(Word):
    """Final status of a catalog row (`catalog.status`); every status but KEPT has a reason."""

    KEPT = "kept"  # in the release shards
    FAILED = "failed"  # could not be ingested
    REMOVED = "removed"  # a copy of an evaluation image, a held-out species, an in-train copy
    EXCLUDED = "excluded"  # no usable taxonomy


class IngestStatus(Word):
    """Status of a row read from a source or an evaluation set (`source_catalog`, `eval_hashes`)."""

    OK = "ok"
    FAILED = "failed"


class FetchStatus(Word):
    """Status of an EOL manifest row's download (`eol_fetch_status.status`)."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # never fetched: the row names no URL or repeats an earlier key


class Ignored(Word):
    """Why an archive member that is not a row was passed over (the ingest report's `ignored`)."""

    UNSAFE_MEMBER = "unsafe_member"  # a link, a device, an absolute or `..` path
    UNLISTED_MEMBER = "unlisted_member"  # an image no metadata row names
    DUPLICATE_MEMBER = "duplicate_member"  # a second member of the same name
    OTHER_PACKAGE = "other_package"  # BIOSCAN: a member of an image package not configured


class Stage(Word):
    """The build stage that records a reason (the names of `treeoflife.pipeline.STAGES`)."""

    INGEST = "ingest"
    TAXONOMY = "taxonomy"
    HASHES = "hashes"
    DEDUP = "dedup"
    RELEASE = "release"
    EVALUATE = "evaluate"


class Reason(Word):
    """Why a row is not used: the `reason` columns and the skip counters of the reports.

    `stages` are the stages that record it (the first is `stage`); `description` says why in
    one line. The member's name is its value in capitals.
    """

    stages: tuple[Stage, ...]
    description: str

    def __new__(cls, value: str, stages: Stage | tuple[Stage, ...], description: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.stages = stages if isinstance(stages, tuple) else (stages,)
        member.description = description
        return member

    @property
    def stage(self) -> Stage:
        """The stage that records this reason first."""
        return self.stages[0]

    # Reading a source's archive or manifest (ingest).
    MISSING_IN_ARCHIVE = (
        "missing_in_archive",
        Stage.INGEST,
        "The metadata lists an image the archive does not hold.",
    )
    MALFORMED_ROW = (
        "malformed_row",
        Stage.INGEST,
        "The metadata row cannot be read (bad JSON, missing id, bad field).",
    )
    DUPLICATE_KEY = (
        "duplicate_key",
        Stage.INGEST,
        "The row repeats the key of an earlier row; the first one is used.",
    )
    MEMBER_TOO_LARGE = (
        "member_too_large",
        Stage.INGEST,
        "The image's archive member is larger than the configured limit.",
    )
    CORRUPT_ARCHIVE_MEMBER = (
        "corrupt_archive_member",
        Stage.INGEST,
        "The image's archive member cannot be read (damaged archive).",
    )
    UNKNOWN_CATEGORY = (
        "unknown_category",
        Stage.INGEST,
        "iNat21: neither the annotations nor the image's folder name a category.",
    )
    CATEGORY_MISMATCH = (
        "category_mismatch",
        Stage.INGEST,
        "iNat21: the annotations and the image's folder name different categories.",
    )
    NO_URL = "no_url", Stage.INGEST, "EOL: the manifest row names no image URL (never fetched)."

    # Rebuilding a published dataset (sources/published; ingest).
    MD5_MISMATCH = (
        "md5_mismatch",
        Stage.INGEST,
        "Published rebuild: the image's bytes differ from licenses.csv's md5 (kept aside, unused).",
    )
    FILE_ABSENT = (
        "file_absent",
        Stage.INGEST,
        "Published rebuild: neither the user's copy nor the image sets hold the listed file.",
    )
    UNKNOWN_SPLIT = (
        "unknown_split",
        Stage.INGEST,
        "Published rebuild: the catalog row's split is not train, val or train_small.",
    )
    CONFLICTING_SPLITS = (
        "conflicting_splits",
        Stage.INGEST,
        "Published rebuild: the catalog lists the image in both train and val.",
    )
    NO_SOURCE_ID = (
        "no_source_id",
        Stage.INGEST,
        "Published rebuild: the catalog row names no EOL, iNat21 or BIOSCAN id.",
    )
    NO_LICENSE_ROW = (
        "no_license_row",
        Stage.INGEST,
        "Published rebuild: an EOL image licenses.csv does not list (no URL, no md5).",
    )

    # Validating image bytes (ingest; NOT_AN_IMAGE also for evaluation images).
    EMPTY_FILE = "empty_file", Stage.INGEST, "The image has no bytes."
    NOT_AN_IMAGE = (
        "not_an_image",
        (Stage.INGEST, Stage.HASHES),
        "The bytes are not an image format we accept (e.g. an HTML error page).",
    )
    IMAGE_TOO_LARGE = (
        "image_too_large",
        Stage.INGEST,
        "The image has more pixels than the configured limit (decompression bomb guard).",
    )
    TRUNCATED_IMAGE = "truncated_image", Stage.INGEST, "The image data ends early."
    DECODE_ERROR = (
        "decode_error",
        Stage.INGEST,
        "The image cannot be decoded (bad size, damaged data, unsupported mode).",
    )

    # Fetching an EOL image (ingest); see also HTTP_STATUS below.
    UNSUPPORTED_SCHEME = (
        "unsupported_scheme",
        Stage.INGEST,
        "The URL's scheme is neither http(s) nor file.",
    )
    INVALID_URL = "invalid_url", Stage.INGEST, "The URL cannot be parsed or has no host."
    NOT_FOUND = "not_found", Stage.INGEST, "A file:// URL names a file that does not exist."
    TIMEOUT = (
        "timeout",
        Stage.INGEST,
        "The server did not answer in time (transient: fetched again by a later run).",
    )
    CONNECTION_ERROR = (
        "connection_error",
        Stage.INGEST,
        "The connection failed or broke (transient).",
    )
    TRUNCATED_BODY = (
        "truncated_body",
        Stage.INGEST,
        "The response body ended before its announced length (transient).",
    )
    TOO_LARGE = (
        "too_large",
        Stage.INGEST,
        "The response body or file is larger than the configured limit.",
    )
    TOO_MANY_REDIRECTS = (
        "too_many_redirects",
        Stage.INGEST,
        "The URL redirects more often than the configured limit.",
    )
    HTTP_ERROR = (
        "http_error",
        Stage.INGEST,
        "The HTTP exchange failed without a usable status (transient).",
    )
    FILE_OUTSIDE_MIRROR = (
        "file_outside_mirror",
        Stage.INGEST,
        "A file:// URL outside every configured local root (refused, never opened).",
    )
    NON_PUBLIC_ADDRESS = (
        "non_public_address",
        Stage.INGEST,
        "The host resolves to a loopback, private, link-local or metadata address (refused).",
    )
    REDIRECT_UNSUPPORTED_SCHEME = (
        "redirect_unsupported_scheme",
        Stage.INGEST,
        "A redirect to a scheme other than http(s) (refused).",
    )

    # Resolving names (taxonomy; the `taxa.reason` column).
    EMPTY_NAME = "empty_name", Stage.TAXONOMY, "The source gives neither a name nor any rank."
    NO_MATCH = "no_match", Stage.TAXONOMY, "No authority knows the name."
    AMBIGUOUS_HOMONYM = (
        "ambiguous_homonym",
        Stage.TAXONOMY,
        "The name matches several taxa that the source's ranks cannot tell apart.",
    )
    UNPARSED_NAME = (
        "unparsed_name",
        Stage.TAXONOMY,
        "The name cannot be parsed as a scientific name and no rank is given.",
    )
    KINGDOM_CONTRADICTS_SOURCE = (
        "kingdom_contradicts_source",
        Stage.TAXONOMY,
        "A web service's answer lies in another kingdom than the source says (refused).",
    )
    API_ERROR = "api_error", Stage.TAXONOMY, "A taxonomy web service gave no usable answer."

    # Reading an evaluation set's images (hashes; the `eval_hashes.reason` column).
    MISSING_FILEPATH = "missing_filepath", Stage.HASHES, "The evaluation set's row names no file."
    OUTSIDE_SET = (
        "outside_set",
        Stage.HASHES,
        "The path is absolute, has `..` or is a symlink out of the set's folder (never read).",
    )
    MISSING_FILE = "missing_file", Stage.HASHES, "No file at the evaluation image's path."
    UNREADABLE = (
        "unreadable",
        Stage.HASHES,
        "The path is a folder, not readable, or a symlink loop, or the read failed.",
    )

    # Removals (dedup; the `removals.reason` column), strongest first: see REMOVAL_PRECEDENCE.
    EXACT_EVAL_DUPLICATE = (
        "exact_eval_duplicate",
        Stage.DEDUP,
        "The same bytes (md5) as an evaluation image.",
    )
    NEAR_EVAL_DUPLICATE = (
        "near_eval_duplicate",
        Stage.DEDUP,
        "A perceptual hash within the threshold of an evaluation image's.",
    )
    HELD_OUT_SPECIES = (
        "held_out_species",
        Stage.DEDUP,
        "A species held out for evaluation (e.g. Rare Species).",
    )
    IN_TRAIN_DUPLICATE = (
        "in_train_duplicate",
        Stage.DEDUP,
        "A copy of another training image that is kept.",
    )

    # Assembling, sharding and packaging the release (release).
    TAXON_UNRESOLVED = (
        "taxon_unresolved",
        Stage.RELEASE,
        "The row's name resolved to no usable taxon (see the taxa table's reason).",
    )
    UNDECODABLE_IMAGE = (
        "undecodable_image",
        Stage.RELEASE,
        "A stored image no longer decodes when resized for a shard.",
    )
    NOT_HASHED = (
        "not_hashed",
        Stage.RELEASE,
        "An evaluation image the hashes stage has no row for (not packaged).",
    )

    # Reading packaged evaluation sets (evaluate; skip counters of the evaluation report).
    IMAGE_MISSING = "image_missing", Stage.EVALUATE, "A packaged sample has no image member."
    IMAGE_UNDECODABLE = (
        "image_undecodable",
        Stage.EVALUATE,
        "A packaged sample's image does not decode.",
    )
    LABEL_MISSING = "label_missing", Stage.EVALUATE, "A packaged sample has no label member."
    LABEL_UNREADABLE = (
        "label_unreadable",
        Stage.EVALUATE,
        "A packaged sample's label is not an integer.",
    )
    LABEL_OUT_OF_RANGE = (
        "label_out_of_range",
        Stage.EVALUATE,
        "A packaged sample's label names no class.",
    )


REMOVAL_PRECEDENCE = (
    Reason.EXACT_EVAL_DUPLICATE,
    Reason.NEAR_EVAL_DUPLICATE,
    Reason.HELD_OUT_SPECIES,
    Reason.IN_TRAIN_DUPLICATE,
)
"""Removal reasons, strongest first: a key removed for several keeps the first."""

HTTP_STATUS = "http_<status>"
"""The family of reasons `http_404`, `http_503`, ...: the last HTTP status of a failed fetch
(ingest, EOL). 429 and 5xx are transient (fetched again by a later run), other 4xx final."""

HTTP_STATUS_DESCRIPTION = (
    "The server answered with this HTTP status (429 and 5xx transient, other codes final)."
)

_HTTP_STATUS = re.compile(r"http_[1-5][0-9]{2}")
_REASONS = frozenset(r.value for r in Reason)


def http_reason(status: int) -> str:
    """The reason recorded for a fetch that ended with HTTP `status` (e.g. `http_404`)."""
    return f"http_{status}"


def known_reason(text: str | None) -> bool:
    """Whether `text` is a reason the build can write: a `Reason` or one of `http_<status>`."""
    if not isinstance(text, str):
        return False
    return text in _REASONS or _HTTP_STATUS.fullmatch(text) is not None
