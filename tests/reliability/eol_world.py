"""A seeded EOL world for the fault soak: manifests, served files, faults and expected outcomes.

Every manifest row gets one planned fate, so the soak can check each row's final status,
reason and attempts against what the server was told to do:

- clean: served as is -> ok after 1 attempt;
- transient (5xx / 429 with Retry-After / reset mid-body / truncated body / slow drip for the
  first 1-2 requests, then the real file) -> ok after fail_first + 1 attempts;
- permanent (404, 403, 410, a 503 that never ends, HTML served as 200, text / PDF / SVG
  served as an image) -> failed with the planned reason;
- rows that are never fetched: no URL and repeated keys (skipped), ragged rows and other
  schemes (failed).

Also runnable as `python -m tests.reliability.eol_world CONFIG.json` (the child the soak kills):
it ingests the EOL source of the config with the soak's download settings.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.sources.builders import EOL_HEADER, jpeg
from tests.support.mirror_server import HTML_ERROR_PAGE, Fault
from treeoflife.sources.download import DownloadSettings

EOL_PREFIX = "https://content.eol.org/data/media/"
RETRIES = 3

# Short backoffs and timeouts so a soak of ~1000 URLs takes seconds; the read timeout is
# well above a loopback read even on a busy machine and well below the drip's pauses.
SETTINGS = DownloadSettings(
    concurrency=48,
    per_host_concurrency=48,
    retries=RETRIES,
    timeout_s=20.0,
    connect_timeout_s=10.0,
    read_timeout_s=3.0,
    backoff_base_s=0.02,
    backoff_max_s=0.2,
    probe_after_s=1.0,  # a learned per-host ceiling is probed higher every second, not 30 s
    user_agent="treeoflife-soak/1.0",
)
DRIP_PAUSE_S = 6.0

TRANSIENT = {
    "http_500": Fault(status=500, fail_first=1),
    "http_502x2": Fault(status=502, fail_first=2),
    "http_503": Fault(status=503, fail_first=1),
    "http_429": Fault(status=429, retry_after="1", fail_first=1),
    "http_429_0": Fault(status=429, retry_after="0", fail_first=2),
    "reset": Fault(reset_after=100, fail_first=1),
    "truncated": Fault(truncate_to=200, fail_first=1),
    "drip": Fault(drip_s=DRIP_PAUSE_S, drip_bytes=256, fail_first=1),
}

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'

# kind -> (fault or None, file bytes or None (no file: the server's own 404), reason, attempts)
PERMANENT = {
    "http_404": (Fault(status=404), b"", "http_404", 1),
    "missing": (None, None, "http_404", 1),
    "http_403": (Fault(status=403), b"", "http_403", 1),
    "http_410": (Fault(status=410), b"", "http_410", 1),
    "http_503_always": (Fault(status=503), b"", "http_503", RETRIES + 1),
    "html_200": (Fault(body=HTML_ERROR_PAGE), b"", "not_an_image", 1),
    "pdf": (None, PDF, "not_an_image", 1),
    "svg": (None, SVG, "not_an_image", 1),
    "empty": (None, b"", "empty_file", 1),
    # hostile redirects (fetch policy): a per-row failure, never the end of the build
    "redirect_ftp": (Fault(redirect_to="ftp://ftp.example.org/x.jpg"), b"",
                     "redirect_unsupported_scheme", 1),
    "redirect_file": (Fault(redirect_to="file:///etc/passwd"), b"",
                      "redirect_unsupported_scheme", 1),
    "redirect_metadata": (Fault(redirect_to="http://169.254.169.254/latest/meta-data/"), b"",
                          "non_public_address", 1),
}  # fmt: skip


@dataclass(frozen=True)
class Expected:
    status: str  # ok / failed / skipped
    reason: str | None
    attempts: int  # planned attempts (a stored row may take more on a busy machine)
    kind: str


@dataclass
class World:
    manifest: Path
    mirror: Path
    faults: dict[str, Fault]  # every planned fault, transient and permanent
    permanent_faults: dict[str, Fault]  # the faults that stay in a "fault-free" run
    expected: dict[str, Expected] = field(default_factory=dict)  # by catalog key
    rows: int = 0

    def keys_of(self, kind: str) -> list[str]:
        return [k for k, e in self.expected.items() if e.kind == kind]


def build_world(
    folder: Path, n: int, seed: int, transient_share: float = 0.15, permanent_share: float = 0.06
) -> World:
    """Write the mirror folder and one manifest of `n` fetched rows plus a few unfetched ones."""
    rng = random.Random(seed)
    mirror = folder / "mirror"
    mirror.mkdir(parents=True, exist_ok=True)
    world = World(folder / "media_manifest.csv", mirror, {}, {})
    lines: list[list] = []

    def add(line: list, key: str, expected: Expected) -> None:
        lines.append(line)
        world.expected[key] = expected

    transient_kinds = sorted(TRANSIENT)
    permanent_kinds = sorted(PERMANENT)
    for i in range(n):
        content, page = 500_000 + i, 1_000 + i % 37
        name = f"{i:05d}.jpg"
        key = f"eol/{content}_{page}"
        line = [content, page, f"https://example.org/photo/{content}", EOL_PREFIX + name,
                "cc-by-4.0", f"Owner {i}"]  # fmt: skip
        u = rng.random()
        if u < transient_share:
            kind = transient_kinds[i % len(transient_kinds)]
            fault = TRANSIENT[kind]
            (mirror / name).write_bytes(jpeg(seed * 100_000 + i, 48 + i % 17, 32 + i % 11))
            world.faults["/" + name] = fault
            add(line, key, Expected("ok", None, max(1, fault.fail_first) + 1, kind))
        elif u < transient_share + permanent_share:
            kind = permanent_kinds[i % len(permanent_kinds)]
            fault, body, reason, attempts = PERMANENT[kind]
            if body is not None:
                (mirror / name).write_bytes(body)
            if fault is not None:
                world.faults["/" + name] = fault
                world.permanent_faults["/" + name] = fault
            add(line, key, Expected("failed", reason, attempts, kind))
        else:
            (mirror / name).write_bytes(jpeg(seed * 100_000 + i, 48 + i % 17, 32 + i % 11))
            add(line, key, Expected("ok", None, 1, "clean"))
    # rows that are never fetched, spread through the manifest (a repeat after its original)
    n_special = max(3, n // 100)
    originals = [lines[i] for i in rng.sample(range(len(lines)), n_special)]
    for j, original in enumerate(originals):
        content = 900_000 + j
        dup = list(original)
        lines.insert(rng.randrange(lines.index(original) + 1, len(lines) + 1), dup)
        world.expected[f"eol/{dup[0]}_{dup[1]}#dup1"] = Expected(
            "skipped", "duplicate_key", 0, "duplicate"
        )
        lines.insert(rng.randrange(len(lines) + 1), [content, 7, "", "", "cc-by", "o"])
        world.expected[f"eol/{content}_7"] = Expected("skipped", "no_url", 0, "no_url")
        ftp = [content + 50_000, 7, "", f"ftp://ftp.example.org/{j}.jpg", "cc-by", "o"]
        lines.insert(rng.randrange(len(lines) + 1), ftp)
        world.expected[f"eol/{content + 50_000}_7"] = Expected(
            "failed", "unsupported_scheme", 0, "ftp"
        )
        local = [content + 60_000, 7, "", "file:///etc/passwd", "cc-by", "o"]  # hostile
        lines.insert(rng.randrange(len(lines) + 1), local)
        world.expected[f"eol/{content + 60_000}_7"] = Expected(
            "failed", "file_outside_mirror", 0, "local_file"
        )
        lines.insert(rng.randrange(len(lines) + 1), [content, 7, "ragged"])
    # ragged rows are keyed by their line number (the header is line 1)
    for number, line in enumerate(lines, start=2):
        if len(line) != len(EOL_HEADER):
            world.expected[f"eol/malformed/0:{number}"] = Expected(
                "failed", "malformed_row", 0, "ragged"
            )
    with open(world.manifest, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(EOL_HEADER)
        w.writerows(lines)
    world.rows = len(lines)
    assert len(world.expected) == world.rows
    return world


def config_dict(root: Path, world: World, server_url: str, rows_per_part: int) -> dict:
    return {
        "data_root": str(root),
        "sources": {
            "eol": {
                "manifests": [str(world.manifest)],
                "mirror": {EOL_PREFIX: server_url + "/"},
                "allow_hosts": [server_url.split("//", 1)[1]],  # the loopback mirror only
                "rows_per_part": rows_per_part,
                "parts_in_flight": 3,
                "retries": RETRIES,
            }
        },
    }


def main(argv: list[str]) -> None:
    from treeoflife.config import config_from_dict
    from treeoflife.sources import ingest_eol

    cfg = config_from_dict(json.loads(Path(argv[0]).read_text()))
    ingest_eol(cfg, settings=SETTINGS, decode_workers=0)


if __name__ == "__main__":
    main(sys.argv[1:])
