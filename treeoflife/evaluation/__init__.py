"""Evaluate CLIP checkpoints on our evaluation sets (CLIP_benchmark `wds/` layout).

`zeroshot.evaluate_zero_shot` / `evaluate_all` give top-1, top-5 and balanced accuracy;
`zeroshot.results_markdown` renders the BioCLIP-style table (rows models, columns tasks).
"""
