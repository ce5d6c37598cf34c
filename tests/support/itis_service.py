"""An ITIS-shaped JSON web service over loopback, answering from a small table of taxa.

It answers the three calls the client makes, in the shapes the recorded ITIS answers have
(tests/fixtures/real/itis-api): `searchByScientificName` (substring, as ITIS does),
`getFullHierarchyFromTSN` (root .. taxon, then the taxon's direct children) and
`getCommonNamesFromTSN` (names in the table's order, which is ITIS's own). Serve it with
`ApiReplayServer(handler=ItisService(taxa))`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SERVICE = "/ITISWebService/jsonservice"


@dataclass(frozen=True)
class ItisTaxon:
    tsn: str
    name: str
    rank: str  # ITIS rank name: Kingdom, Phylum / Division, Class, Order, Family, Genus, Species
    parent: str | None = None
    common: tuple[tuple[str, str], ...] = ()  # (name, language) in ITIS's order


@dataclass
class ItisService:
    taxa: list[ItisTaxon]
    asked: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.by_tsn = {t.tsn: t for t in self.taxa}

    def _record(self, t: ItisTaxon) -> dict:
        return {
            "class": "gov.usgs.itis.itis_service.data.SvcHierarchyRecord",
            "author": None,
            "parentName": self.by_tsn[t.parent].name if t.parent else "",
            "parentTsn": t.parent or "",
            "rankName": t.rank,
            "taxonName": t.name,
            "tsn": t.tsn,
        }

    def __call__(self, path: str, params: dict[str, str]) -> tuple[int, object]:
        call = path.rsplit("/", 1)[-1]
        self.asked.append(call)
        if call == "searchByScientificName":
            key = params.get("srchKey", "").lower()
            hits = [
                {"combinedName": t.name, "tsn": t.tsn, "kingdom": self._kingdom(t)}
                for t in self.taxa
                if key and key in t.name.lower()
            ]
            return 200, {"scientificNames": hits or [None], "class": "SvcScientificNameList"}
        taxon = self.by_tsn.get(params.get("tsn", ""))
        if taxon is None:
            return 200, {"tsn": params.get("tsn"), "hierarchyList": [None], "commonNames": [None]}
        if call == "getFullHierarchyFromTSN":
            chain, t = [], taxon
            while t is not None:
                chain.append(t)
                t = self.by_tsn.get(t.parent) if t.parent else None
            children = [c for c in self.taxa if c.parent == taxon.tsn]
            records = [self._record(x) for x in [*reversed(chain), *children]]
            return 200, {"hierarchyList": records, "tsn": taxon.tsn}
        if call == "getCommonNamesFromTSN":
            names = [
                {"commonName": n, "language": lang, "tsn": taxon.tsn} for n, lang in taxon.common
            ]
            return 200, {"commonNames": names or [None], "tsn": taxon.tsn}
        return 404, {"error": f"unknown call {call}"}

    def _kingdom(self, t: ItisTaxon) -> str:
        while t.parent:
            t = self.by_tsn[t.parent]
        return t.name
