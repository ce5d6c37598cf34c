"""Taxonomy: the GBIF backbone in DuckDB, name normalisation, and resolution with provenance."""

from treeoflife.taxonomy.backbone import AUTHORITY, load_backbone, open_backbone
from treeoflife.taxonomy.names import ParsedName, match_key, normalize_name, normalize_rank_value
from treeoflife.taxonomy.queries import taxonomy_queries
from treeoflife.taxonomy.resolve import resolve_taxa

__all__ = [
    "AUTHORITY",
    "ParsedName",
    "load_backbone",
    "match_key",
    "normalize_name",
    "normalize_rank_value",
    "open_backbone",
    "resolve_taxa",
    "taxonomy_queries",
]
