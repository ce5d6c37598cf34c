"""Webdataset shards compatible with BioCLIP's TreeOfLife-10M and stock open_clip.

- settings.py: ShardSettings, what shards are made with (from the config's `shards` section);
- parts.py: a catalog row as a sample's tar parts; shard_file.py: one shard file (tar stream,
  index rows, sha256; overlapped closes); manifest.py: a split's sizes, manifest and index,
  and the rule by which a rerun keeps a shard;
- writer.py: the driver, write_split_shards (in process, or per-shard tasks from tasks.py run
  by any mapper); release.py: the release's three splits; verify.py: read everything back.
"""
