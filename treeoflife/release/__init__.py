"""Release files: the catalog Parquet, the dataset card, licences and evaluation-set wds."""
