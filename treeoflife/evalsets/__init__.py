"""Evaluation sets: read in the layouts they ship in, labelled, packaged, read back.

- layouts: every shipped layout (`LAYOUTS`: rare_species, birds525, meta_album, folder,
  manifest), one reader each, all giving one row shape.
- files: a set's images, reached only inside its folder; set names safe to become paths.
- sets: a set as the config names it: its folder, its rows, the files it reads
  (`evalset_input_files`, for fingerprints).
- labels: a row's taxonomy query, label and class name; class names in another text type.
- report: what became of a set's images (missing, outside the set); none usable is an error.
- wds: CLIP_benchmark's `wds/` layout, written by the release and read by the evaluation.
- package: a set packaged for the release.

Hashing a set's images lives in treeoflife.dedup.hashing (it reads them through `files`).
Nothing is imported here, so config.py can import `layouts` and `files` cheaply.
"""
