"""Zero-shot prompt templates: OpenAI's 80 (from open_clip), rendering a set's own."""

from __future__ import annotations

import open_clip

from treeoflife.evaluation import templates as tpl


def test_openai_templates_come_from_open_clip():
    assert len(tpl.OPENAI_IMAGENET_TEMPLATES) == 80
    ours, theirs = tpl.OPENAI_IMAGENET_TEMPLATES[0], open_clip.OPENAI_IMAGENET_TEMPLATES[0]
    assert ours("Canis lupus") == theirs("Canis lupus")
    rendered = {t("Canis lupus") for t in tpl.OPENAI_IMAGENET_TEMPLATES}
    assert len(rendered) == 80 and all("Canis lupus" in r for r in rendered)


def test_rendering_string_and_callable_templates():
    templates = ["a photo of {c}.", "a {c} in {the} wild"]
    assert tpl.render(templates[1], "Apis mellifera") == "a Apis mellifera in {the} wild"
    callables = tpl.as_callables([*templates, lambda c: c.upper()])
    assert [f("x y") for f in callables] == ["a photo of x y.", "a x y in {the} wild", "X Y"]
