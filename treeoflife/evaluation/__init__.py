"""Evaluate CLIP models on our evaluation sets (CLIP_benchmark `wds/` layout), as BioCLIP does.

`suite.evaluate_model` gives, per set, zero-shot top-1, top-5 and balanced accuracy
(`zeroshot`) and SimpleShot 1- and 5-shot accuracy (`fewshot`) from one pass over the images
(`features`); `suite.report_markdown` renders BioCLIP's tables (rows models, columns tasks).
The clip_benchmark cross-check (tests/support/crosscheck.py) compares with the same model and
set. The sets are read by treeoflife.evalsets.wds, which also writes them; class names in
another text type come from treeoflife.evalsets.labels.
"""
