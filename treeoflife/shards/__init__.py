"""Webdataset shards compatible with BioCLIP's TreeOfLife-10M and stock open_clip."""
