"""Kinds of input change applied to a built sample's inputs (the drift matrix's cases).

Each change edits the files under a data root's `sample/` the way a user or an upstream
publisher would (a licence corrected, an image replaced, rows taken down, a setting changed)
and returns the config overrides it needs (settings changes). A change picks what it edits
from the built release (kept rows), so it always touches something the release holds.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from treeoflife.io import read_image_bytes

EOL_PREFIX = "https://content.eol.org/data/media/"


@dataclass
class Built:
    """What a change may look at: the built root (read only) and its release catalog."""

    root: Path
    catalog: pa.Table

    def kept(self, source: str, n: int = 1, split: str = "train") -> list[dict]:
        t = self.catalog
        mask = pc.and_(pc.equal(t["source"], source), pc.equal(t["status"], "kept"))
        rows = t.filter(pc.and_(mask, pc.equal(t["split"], split))).sort_by("key")
        return rows.slice(0, n).to_pylist()

    def stored_bytes(self, key: str) -> bytes:
        """The stored image of an ingested row (what exact dedup hashes)."""
        source = key.split("/", 1)[0]
        for part in sorted((self.root / "catalog" / source).glob("part-*[0-9].parquet")):
            t = pq.read_table(part, columns=["key", "image_file", "image_offset", "image_size"])
            hit = t.filter(pc.equal(t["key"], key)).to_pylist()
            if hit:
                r = hit[0]
                return read_image_bytes(self.root, r["image_file"], r["image_offset"],
                                        r["image_size"])  # fmt: skip
        raise KeyError(key)


def new_jpeg(seed: int, size: tuple[int, int] = (96, 72)) -> bytes:
    """A small JPEG no input holds (its pattern depends on `seed`)."""
    img = Image.new("RGB", size, ((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256))
    draw = ImageDraw.Draw(img)
    for i in range(6):
        x = (seed * 17 + i * 23) % size[0]
        draw.rectangle(
            [x, i * 10, x + 20, i * 10 + 25], fill=((i * 40) % 256, 255 - seed % 256, 90)
        )
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


# ------------------------------------------------------------------------------ file edits


def edit_csv(
    path: Path, edit: Callable[[list[str], list[list[str]]], list[list[str]]], delimiter=","
):
    with open(path, encoding="utf-8", newline="") as fh:
        if delimiter == "\t":
            lines = fh.read().splitlines()
            header, rows = lines[0].split("\t"), [line.split("\t") for line in lines[1:] if line]
        else:
            reader = csv.reader(fh)
            header, rows = next(reader), list(reader)
    rows = edit(header, rows)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        if delimiter == "\t":
            fh.write("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
        else:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)


def _manifest_of(sample: Path, content_id: int) -> Path:
    for path in sorted((sample / "eol").glob("media_manifest_*.csv")):
        if f"\n{content_id}," in path.read_text(encoding="utf-8"):
            return path
    raise KeyError(content_id)


def edit_eol_row(sample: Path, built: Built, column: str, value: str) -> None:
    row = built.kept("eol")[0]
    cid = row["eol_content_id"]

    def edit(header, rows):
        col = header.index(column)
        for r in rows:
            if r[0] == str(cid):
                r[col] = value
        return rows

    edit_csv(_manifest_of(sample, cid), edit)


def mirror_file(sample: Path, url: str) -> Path:
    return sample / "eol" / "mirror" / url[len(EOL_PREFIX) :]


def eol_url(sample: Path, content_id: int) -> str:
    path = _manifest_of(sample, content_id)
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for r in reader:
            if r["EOL content ID"] == str(content_id):
                return r["EOL Full-Size Copy URL"]
    raise KeyError(content_id)


def rewrite_zip(path: Path, replace: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(path, "w") as out:
        for info, data in members:
            short = "/".join(info.filename.split("/")[-2:])
            out.writestr(info, replace.get(short, data))


def rewrite_tar_gz(path: Path, replace: dict[str, bytes]) -> None:
    with tarfile.open(path, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        for m, data in members:
            if m.name in replace:
                data = replace[m.name]
                m.size, m.mtime = len(data), m.mtime + 1
            out.addfile(m, io.BytesIO(data) if data is not None else None)
    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))


def evalset_rows(sample: Path, name: str) -> tuple[Path, list[dict]]:
    meta = sample / "evalsets" / name / "metadata.csv"
    with open(meta, encoding="utf-8", newline="") as fh:
        return meta, list(csv.DictReader(fh))


# ------------------------------------------------------------------------------ the changes
# Each: (sample folder, built) -> config overrides (None: the config is unchanged).


def eol_license_edited(sample: Path, built: Built):
    edit_eol_row(sample, built, "License Name", "cc-by-sa-4.0")


def eol_rights_holder_edited(sample: Path, built: Built):
    edit_eol_row(sample, built, "Copyright Owner", "A. N. Other (corrected)")


def eol_common_name_edited(sample: Path, built: Built):
    page = str(built.kept("eol")[0]["eol_page_id"])

    def edit(header, rows):
        col = header.index("common_name")
        for r in rows:
            if r[0] == page:
                r[col] = "Renamed Creature"
        return rows

    edit_csv(sample / "eol" / "pages.csv", edit)


def eol_mirror_image_replaced(sample: Path, built: Built):
    row = built.kept("eol")[0]
    mirror_file(sample, eol_url(sample, row["eol_content_id"])).write_bytes(new_jpeg(1))


def eol_rows_removed(sample: Path, built: Built):
    gone = {str(r["eol_content_id"]) for r in built.kept("eol", 3)}
    for path in sorted((sample / "eol").glob("media_manifest_*.csv")):
        edit_csv(path, lambda header, rows: [r for r in rows if r[0] not in gone])


def eol_rows_added(sample: Path, built: Built):
    """Two new rows: one on a new mirror file, one on an image another row already uses."""
    path = sample / "eol" / "media_manifest_2.csv"
    row = built.kept("eol")[0]
    url = eol_url(sample, row["eol_content_id"])
    new_url = EOL_PREFIX + "aa/bb/cc/900.990000001.jpg"
    mirror_file(sample, new_url).parent.mkdir(parents=True, exist_ok=True)
    mirror_file(sample, new_url).write_bytes(new_jpeg(2))

    def edit(header, rows):
        page = str(row["eol_page_id"])
        return [
            *rows,
            ["990000001", page, "", new_url, "cc-by-4.0", "New Photographer"],
            ["990000002", page, "", url, "cc-by-4.0", "Same Image Again"],
        ]

    edit_csv(path, edit)


def eol_manifest_reordered(sample: Path, built: Built):
    edit_csv(sample / "eol" / "media_manifest_1.csv", lambda header, rows: rows[::-1])


def eol_rows_per_part_changed(sample: Path, built: Built):
    return {"sources": {"eol": {"rows_per_part": 25}}}


def eol_resize_changed(sample: Path, built: Built):
    return {"sources": {"eol": {"resize_mode": "max_side", "image_size": 80}}}


def _bioscan_edit(sample: Path, processid: str, column: str | None, value: str | None):
    def edit(header, rows):
        col = header.index("processid")
        if column is None:
            return [r for r in rows if r[col] != processid]
        for r in rows:
            if r[col] == processid:
                r[header.index(column)] = value
        return rows

    edit_csv(sample / "bioscan" / "BIOSCAN_Insect_Dataset_metadata.tsv", edit, delimiter="\t")


def bioscan_family_edited(sample: Path, built: Built):
    _bioscan_edit(sample, built.kept("bioscan")[0]["bioscan_processid"], "family", "Muscidae")


def bioscan_row_removed(sample: Path, built: Built):
    _bioscan_edit(sample, built.kept("bioscan")[0]["bioscan_processid"], None, None)


def bioscan_zip_image_replaced(sample: Path, built: Built):
    row = built.kept("bioscan")[0]
    member = f"{row['bioscan_part']}/{row['bioscan_filename']}"
    for path in sorted((sample / "bioscan").glob("*.zip")):
        with zipfile.ZipFile(path) as zf:
            names = {"/".join(n.split("/")[-2:]) for n in zf.namelist()}
        if member in names:
            rewrite_zip(path, {member: new_jpeg(3)})
            return
    raise KeyError(member)


def bioscan_images_per_part_changed(sample: Path, built: Built):
    return {"sources": {"bioscan": {"images_per_part": 20}}}


def inat21_archive_image_replaced(sample: Path, built: Built):
    row = built.kept("inat21")[0]
    rewrite_tar_gz(sample / "inat21" / "train.tar.gz", {row["inat21_file"]: new_jpeg(4)})


def inat21_annotation_removed(sample: Path, built: Built):
    row = built.kept("inat21")[0]
    path = sample / "inat21" / "train.json"
    data = json.loads(path.read_text())
    gone = {i["id"] for i in data["images"] if i["file_name"] == row["inat21_file"]}
    data["images"] = [i for i in data["images"] if i["id"] not in gone]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in gone]
    path.write_text(json.dumps(data))


def inat21_images_per_part_changed(sample: Path, built: Built):
    return {"sources": {"inat21": {"images_per_part": 25}}}


def evalset_image_replaced(sample: Path, built: Built):
    _, rows = evalset_rows(sample, "seen_species")
    (sample / "evalsets" / "seen_species" / rows[0]["filepath"]).write_bytes(new_jpeg(5))


def evalset_image_replaced_by_training_copy(sample: Path, built: Built):
    """An evaluation image becomes an exact copy of a kept training image: a fresh build
    removes that training image (exact_eval_duplicate)."""
    _, rows = evalset_rows(sample, "seen_species")
    data = built.stored_bytes(built.kept("bioscan")[0]["key"])
    (sample / "evalsets" / "seen_species" / rows[1]["filepath"]).write_bytes(data)


def evalset_image_added(sample: Path, built: Built):
    meta, rows = evalset_rows(sample, "seen_species")
    new = dict(rows[0], filepath=rows[0]["filepath"].rsplit("/", 1)[0] + "/added-0001.jpg")
    (sample / "evalsets" / "seen_species" / new["filepath"]).write_bytes(
        built.stored_bytes(built.kept("inat21")[0]["key"])
    )
    with open(meta, "a", encoding="utf-8", newline="") as fh:
        csv.DictWriter(fh, list(rows[0]), lineterminator="\n").writerow(new)


def backbone_vernacular_edited(sample: Path, built: Built):
    def edit(header, rows):
        name, lang = header.index("vernacularName"), header.index("language")
        for r in rows:
            if len(r) > lang and r[lang] == "en":
                r[name] = r[name] + " (revised)"
        return rows

    edit_csv(sample / "backbone" / "VernacularName.tsv", edit, delimiter="\t")


def shards_per_shard_changed(sample: Path, built: Built):
    return {"shards": {"samples_per_shard": 50}}


def shards_image_size_changed(sample: Path, built: Built):
    return {"shards": {"image_size": 48}}


def splits_val_fraction_changed(sample: Path, built: Built):
    return {"splits": {"val_fraction": 0.2}}


CHANGES: dict[str, Callable] = {
    f.__name__: f
    for f in (
        eol_license_edited,
        eol_rights_holder_edited,
        eol_common_name_edited,
        eol_mirror_image_replaced,
        eol_rows_removed,
        eol_rows_added,
        eol_manifest_reordered,
        eol_rows_per_part_changed,
        eol_resize_changed,
        bioscan_family_edited,
        bioscan_row_removed,
        bioscan_zip_image_replaced,
        bioscan_images_per_part_changed,
        inat21_archive_image_replaced,
        inat21_annotation_removed,
        inat21_images_per_part_changed,
        evalset_image_replaced,
        evalset_image_replaced_by_training_copy,
        evalset_image_added,
        backbone_vernacular_edited,
        shards_per_shard_changed,
        shards_image_size_changed,
        splits_val_fraction_changed,
    )
}
