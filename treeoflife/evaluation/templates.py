"""Zero-shot prompt templates: OpenAI's 80 ImageNet templates and a set's own template file.

A set in CLIP_benchmark's `wds/` layout ships `zeroshot_classification_templates.txt`, one
template per line with a `{c}` placeholder for the class name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from open_clip import OPENAI_IMAGENET_TEMPLATES as _OPEN_CLIP_OPENAI_TEMPLATES

from treeoflife.errors import InputError

TEMPLATES_FILE = "zeroshot_classification_templates.txt"
PLACEHOLDER = "{c}"

# The CLIP paper's 80 ImageNet prompts, as open_clip ships them (callables of the class name).
OPENAI_IMAGENET_TEMPLATES: tuple[Callable[[str], str], ...] = tuple(_OPEN_CLIP_OPENAI_TEMPLATES)

Template = str | Callable[[str], str]


def parse_templates(text: str) -> list[str]:
    """Templates from a templates file's text (blank lines ignored, like CLIP_benchmark)."""
    templates = [line.strip() for line in text.splitlines() if line.strip()]
    bad = [t for t in templates if PLACEHOLDER not in t]
    if bad:
        raise InputError(f"template(s) without the {PLACEHOLDER} placeholder: {bad[:3]}")
    return templates


def read_templates(evalset_dir: str | Path) -> list[str] | None:
    """The set's own templates, or None when it ships no templates file."""
    path = Path(evalset_dir) / TEMPLATES_FILE
    if not path.is_file():
        return None
    templates = parse_templates(path.read_text(encoding="utf-8"))
    if not templates:
        raise InputError(f"{path} holds no templates")
    return templates


def render(template: Template, classname: str) -> str:
    """A prompt: `{c}` replaced by the class name (other braces are left alone)."""
    if callable(template):
        return template(classname)
    return template.replace(PLACEHOLDER, classname)


def as_callables(templates: Sequence[Template]) -> list[Callable[[str], str]]:
    """Templates as callables, the form open_clip.build_zero_shot_classifier takes safely."""
    return [t if callable(t) else (lambda c, t=t: render(t, c)) for t in templates]
