"""Rebuild a published dataset (TreeOfLife-10M) from its catalog.csv and licenses.csv."""

from treeoflife.sources.published.ingest import ingest_published, plan_path, published_dir
from treeoflife.sources.published.plan import write_plan

__all__ = ["ingest_published", "plan_path", "published_dir", "write_plan"]
