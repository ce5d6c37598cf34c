"""docs/config.md, generated from the config dataclasses: their fields, types, defaults and
rules, and the comments written beside or above each field in treeoflife/config.py.

    python -m treeoflife.config_docs            # rewrite docs/config.md
    python -m treeoflife.config_docs --check    # exit 1 if docs/config.md is out of date

A test regenerates the page and compares it with the checked-in file, so the reference cannot
drift from the code: a new setting is documented by the comment written with it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import sys
import textwrap
import tokenize
import typing
from pathlib import Path

import yaml

from treeoflife import config
from treeoflife.config_rules import describe, rule_of

DOCS_PAGE = Path("docs") / "config.md"


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    type: str
    default: str
    allowed: str
    doc: str


@dataclasses.dataclass(frozen=True)
class Section:
    path: str  # "sources.eol", "evalsets[]", "" for the top level
    doc: str
    keys: list[Key]
    sections: list[str]  # the sub-sections of this one, by path


def _comments(source: str) -> dict[int, str]:
    """Line number (1-based, in `source`) -> the comment on it, without the `#`."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string.lstrip("#").strip()
    return out


def field_comments(cls: type) -> dict[str, tuple[str, str]]:
    """Field name -> (annotation as written, its comment: the comment lines right above the
    field and the comments on the field's own lines, joined)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments = _comments(source)
    out = {}
    for node in ast.parse(source).body[0].body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        above = []
        i = node.lineno - 1
        while i >= 1 and lines[i - 1].strip().startswith("#"):
            above.insert(0, comments[i])
            i -= 1
        beside = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        out[node.target.id] = (_type_text(node.annotation), " ".join(above + beside))
    return out


def _type_text(annotation: ast.expr) -> str:
    """The annotation as a user reads it: a nested config class is a `mapping`."""
    text = ast.unparse(annotation).replace("typing.", "")
    for name, obj in vars(config).items():
        if dataclasses.is_dataclass(obj) and isinstance(obj, type):
            text = text.replace(name, "mapping")
    return text


def _yaml(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{_yaml(f.default)}`"
    if f.default_factory is not dataclasses.MISSING:
        return f"`{_yaml(f.default_factory())}`"
    return "required"


def _section_type(tp) -> tuple[type | None, str]:
    """(the dataclass a field opens as a section, the suffix of its path) or (None, "")."""
    if dataclasses.is_dataclass(tp):
        return tp, ""
    if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
        return typing.get_args(tp)[0], "[]"
    return None, ""


def sections(cls: type = config.BuildConfig, path: str = "") -> list[Section]:
    """The sections of `cls` (depth first): its own keys, then each sub-section."""
    hints = typing.get_type_hints(cls)
    written = field_comments(cls)
    keys, subs, nested = [], [], []
    for f in dataclasses.fields(cls):
        annotation, doc = written[f.name]
        sub_cls, suffix = _section_type(hints[f.name])
        if sub_cls is None and "schema" in f.metadata:
            sub_cls = f.metadata["schema"]
        sub_path = f"{path}.{f.name}".lstrip(".") + suffix
        if sub_cls is not None:
            subs.append(sub_path)
            nested.extend(sections(sub_cls, sub_path))
            if suffix or "schema" in f.metadata:  # a list or mapping: also a key of its own
                keys.append(Key(f.name, annotation, _default(f), describe(rule_of(f)), doc))
            continue
        keys.append(Key(f.name, annotation, _default(f), describe(rule_of(f)), doc))
    doc = " ".join(inspect.cleandoc(cls.__doc__ or "").split()) if _own_doc(cls) else ""
    return [Section(path, doc, keys, subs), *nested]


def _own_doc(cls: type) -> bool:
    """Whether `cls` has a docstring of its own (not dataclass's generated signature)."""
    return bool(cls.__doc__) and not cls.__doc__.startswith(f"{cls.__name__}(")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def undocumented(all_sections: list[Section] | None = None) -> list[str]:
    """Keys with no comment (a test keeps this empty)."""
    return [
        f"{s.path or 'top level'}.{k.name}"
        for s in all_sections or sections()
        for k in s.keys
        if not k.doc
    ]


def render() -> str:
    """The text of docs/config.md."""
    all_sections = sections()
    intro = inspect.getdoc(config).split("\n\n")
    out = [
        "# Build configuration reference",
        "",
        "<!-- Generated from treeoflife/config.py by `python -m treeoflife.config_docs`: do not"
        " edit by hand (tests/docs/test_config_docs.py fails when this page and the code"
        " differ). -->",
        "",
        " ".join(" ".join(p.split()) for p in intro[1:]),
        "",
        "A build config is one YAML file (`configs/sample.yaml` for the bundled sample,"
        " `configs/tol10m.yaml` for the real sources); every key below is optional unless"
        " marked required. `null` means not set. A path marked *existing* must exist when"
        " `treeoflife build` starts, unless it is a URL (not checked) or lies under"
        " `<data_root>/sample` in a config with a `sample` section (the first stage writes"
        " it). Each problem is reported on its own line naming the key, e.g."
        " `error: sources.eol.concurrency: must be >= 1, got 0`, and the command exits 2.",
        "",
        "Sections: "
        + ", ".join(f"[`{s.path}`](#{_anchor(s.path)})" for s in all_sections if s.path)
        + ".",
        "",
    ]
    for s in all_sections:
        title = s.path or "top level"
        out += [f"## {title}", ""]
        if s.doc:
            out += [s.doc, ""]
        if s.path.endswith("[]"):
            out += [f"Each entry of the `{s.path[:-2]}` list has these keys.", ""]
        if s.keys:
            out += ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
        for k in s.keys:
            out.append(
                f"| `{k.name}` | `{_cell(k.type)}` | {_cell(k.default)} | {_cell(k.allowed)} "
                f"| {_cell(k.doc)} |"
            )
        if s.sections:
            subs = ", ".join(f"[`{p}`](#{_anchor(p)})" for p in s.sections)
            out += [""] if s.keys else []
            out.append(f"Sections: {subs}.")
        out.append("")
    return "\n".join(out)


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation other than - and _ dropped."""
    return "".join(c for c in title.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m treeoflife.config_docs", description=__doc__)
    ap.add_argument("--output", type=Path, default=DOCS_PAGE, help="default: docs/config.md")
    ap.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python -m treeoflife.config_docs")
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
