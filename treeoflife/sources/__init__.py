"""Source ingests: iNat21, BIOSCAN-1M and EOL into per-part source catalogs and image stores."""

from treeoflife.sources.bioscan import ingest_bioscan
from treeoflife.sources.eol import ingest_eol
from treeoflife.sources.inat21 import ingest_inat21
from treeoflife.sources.ingest import IngestStats

__all__ = ["IngestStats", "ingest_bioscan", "ingest_eol", "ingest_inat21"]
