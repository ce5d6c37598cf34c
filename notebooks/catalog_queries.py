# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Querying the TreeOfLife catalog
#
# `catalog.parquet` has one row per input image (kept in the shards or not, with the reason).
# Rows are sorted by source, then kingdom .. species, with statistics per row group, so DuckDB
# and polars skip the row groups a filter on source or taxon cannot match. No project code
# needed: only `duckdb` and `polars`.
#
# Open as a notebook with jupytext (`jupytext --to ipynb catalog_queries.py`) or run it as a
# script. `TREEOFLIFE_CATALOG` points at the catalog (default: the `make shards` build).

# %%
import os

import duckdb
import polars as pl

CATALOG = os.environ.get("TREEOFLIFE_CATALOG", "data/release/catalog.parquet")
con = duckdb.connect()
con.execute(f"CREATE VIEW catalog AS SELECT * FROM read_parquet('{CATALOG}')")

# %% [markdown]
# ## Images per kingdom (in the shards)

# %%
per_kingdom = con.execute(
    """
    SELECT kingdom, count(*) AS images
    FROM catalog WHERE status = 'kept'
    GROUP BY kingdom ORDER BY images DESC, kingdom
    """
).fetchall()
print(per_kingdom)

# %% [markdown]
# ## The 20 largest genera

# %%
largest_genera = (
    pl.scan_parquet(CATALOG)
    .filter((pl.col("status") == "kept") & pl.col("genus").is_not_null())
    .group_by("kingdom", "family", "genus")
    .agg(pl.len().alias("images"))
    .sort(["images", "genus"], descending=[True, False])
    .head(20)
    .collect()
)
print(largest_genera)

# %% [markdown]
# ## All images of one species, with their shard and position
#
# The Monarch butterfly (17 images in the bundled sample, from iNat21 and EOL);
# `TREEOFLIFE_SPECIES="Genus epithet"` picks another.
#
# `shard` is relative to the release's `shards/` folder and `shard_position` is the sample's
# index in it; `shards/<split>/index.parquet` gives its byte offset for a direct read.

# %%
GENUS, EPITHET = os.environ.get("TREEOFLIFE_SPECIES", "Danaus plexippus").split(" ", 1)
one_species = con.execute(
    """
    SELECT key, treeoflife_id, source, split, shard, shard_position, license
    FROM catalog
    WHERE genus = ? AND species = ? AND status = 'kept'
    ORDER BY shard, shard_position
    """,
    [GENUS, EPITHET],
).fetchall()
print(f"{len(one_species)} images of {GENUS} {EPITHET}")
for row in one_species[:10]:
    print(row)

# %% [markdown]
# ## Rank completeness per source
#
# Share of kept images with each rank resolved (BioCLIP: 84% of images had all seven).

# %%
ranks = ["kingdom", "phylum", "class", "order", "family", "genus", "species"]
completeness = (
    pl.scan_parquet(CATALOG)
    .filter(pl.col("status") == "kept")
    .group_by("source")
    .agg(
        pl.len().alias("images"),
        *[pl.col(r).is_not_null().mean().round(4).alias(r) for r in ranks],
        pl.all_horizontal([pl.col(r).is_not_null() for r in ranks]).mean().round(4).alias("all_7"),
    )
    .sort("source")
    .collect()
)
print(completeness)

# %% [markdown]
# ## Why images are not in the shards

# %%
not_kept = con.execute(
    """
    SELECT status, reason, count(*) AS images FROM catalog
    WHERE status != 'kept' GROUP BY ALL ORDER BY images DESC, reason
    """
).fetchall()
print(not_kept)
