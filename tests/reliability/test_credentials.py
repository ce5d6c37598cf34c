"""Credentials in a source URL are never published (issue 15: `user:pass@` in a source URL was
published in `licenses.csv` and the catalog).

The sample's EOL manifest gets `user:pass@` in both URL columns of some rows (the media URLs
still fetched, through a mirror entry for the credentialed prefix); after a build, no file the
build wrote (catalog parts, fetch status, release, shards, eval sets, report) holds the secret,
while the rows are there, kept, with the URLs minus the credentials.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cret-Pa55"
EOL_MEDIA = "https://content.eol.org/data/media/"
CRED_MEDIA = f"https://alice:{SECRET}@content.eol.org/data/media/"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "treeoflife.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


def _add_credentials(manifest: Path, rows: int) -> list[str]:
    """Put credentials into both URL columns of the first `rows` rows; their content ids."""
    with open(manifest, newline="") as fh:
        table = list(csv.reader(fh))
    header, body = table[0], table[1:]
    src, full = header.index("Medium Source URL"), header.index("EOL Full-Size Copy URL")
    ids = []
    for row in body[:rows]:
        row[src] = row[src].replace("https://", f"https://bob:{SECRET}@", 1)
        row[full] = row[full].replace(EOL_MEDIA, CRED_MEDIA, 1)
        ids.append(row[0])
    with open(manifest, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *body])
    return ids


def _holders_of_secret(root: Path) -> list[str]:
    """Files under `root` (but the inputs) whose content holds SECRET, read as the format
    they are (Parquet cells, tar members, text)."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if rel.parts[0] == "sample":
            continue
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            cells = [
                v
                for col in table.columns
                if pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                for v in col.to_pylist()
                if v
            ]
            if any(SECRET in v for v in cells):
                found.append(str(rel))
        elif path.suffix == ".tar":
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    data = tar.extractfile(member).read() if member.isfile() else b""
                    if SECRET.encode() in data:
                        found.append(f"{rel}:{member.name}")
        elif SECRET.encode() in path.read_bytes():
            found.append(str(rel))
    return found


def test_credentials_in_source_urls_are_never_published(tmp_path):
    root = tmp_path / "data"
    assert _cli("sample", "--data-root", str(root)).returncode == 0
    ids = _add_credentials(root / "sample" / "eol" / "media_manifest_1.csv", rows=8)
    data = yaml.safe_load((REPO / "configs" / "sample.yaml").read_text())
    data["sources"]["eol"]["mirror"][CRED_MEDIA] = data["sources"]["eol"]["mirror"][EOL_MEDIA]
    config = tmp_path / "creds.yaml"
    config.write_text(yaml.safe_dump(data))
    done = _cli("build", "-q", "--config", str(config), "--data-root", str(root))
    assert done.returncode == 0, done.stderr[-3000:]
    assert SECRET not in done.stdout + done.stderr

    catalog = pq.read_table(root / "release" / "catalog.parquet").to_pylist()
    rows = {r["eol_content_id"]: r for r in catalog if r["source"] == "eol"}
    ours = [rows[int(i)] for i in ids if int(i) in rows]
    assert len(ours) == len(ids), "credentialed rows vanished"
    assert any(r["status"] == "kept" for r in ours), "the credentialed media URL was not fetched"
    assert all(r["source_url"].startswith("https://") and "@" not in r["source_url"] for r in ours)
    assert _holders_of_secret(root) == []
