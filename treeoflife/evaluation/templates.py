"""Zero-shot prompt templates: OpenAI's 80 ImageNet templates, or a set's own (a set in
CLIP_benchmark's `wds/` layout ships them; treeoflife.evalsets.wds reads them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from open_clip import OPENAI_IMAGENET_TEMPLATES as _OPEN_CLIP_OPENAI_TEMPLATES

from treeoflife.evalsets.wds import PLACEHOLDER

# The CLIP paper's 80 ImageNet prompts, as open_clip ships them (callables of the class name).
OPENAI_IMAGENET_TEMPLATES: tuple[Callable[[str], str], ...] = tuple(_OPEN_CLIP_OPENAI_TEMPLATES)

Template = str | Callable[[str], str]


def render(template: Template, classname: str) -> str:
    """A prompt: `{c}` replaced by the class name (other braces are left alone)."""
    if callable(template):
        return template(classname)
    return template.replace(PLACEHOLDER, classname)


def as_callables(templates: Sequence[Template]) -> list[Callable[[str], str]]:
    """Templates as callables, the form open_clip.build_zero_shot_classifier takes safely."""
    return [t if callable(t) else (lambda c, t=t: render(t, c)) for t in templates]
