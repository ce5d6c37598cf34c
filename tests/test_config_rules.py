"""The config's rules themselves: every number has a range, every choice list is the one the
stage acts on, the defaults pass their own rules."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from treeoflife import config
from treeoflife.config_rules import NUMERIC_RULES, check, describe, rule_of, setting


def _dataclasses(cls, seen=None) -> list[type]:
    """`cls` and every config dataclass reachable from its fields."""
    seen = seen if seen is not None else []
    if cls in seen:
        return seen
    seen.append(cls)
    for f in dataclasses.fields(cls):
        for tp in (
            typing.get_type_hints(cls)[f.name],
            *typing.get_args(typing.get_type_hints(cls)[f.name]),
        ):
            if dataclasses.is_dataclass(tp):
                _dataclasses(tp, seen)
        if "schema" in f.metadata:
            _dataclasses(f.metadata["schema"], seen)
    return seen


CLASSES = _dataclasses(config.BuildConfig)


def _scalar(tp):
    """The element type of `X | None`, `list[X]`."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is list or (args and len(args) == 1):
        return _scalar(args[0])
    return tp


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_every_numeric_setting_has_a_range(cls):
    hints = typing.get_type_hints(cls)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if _scalar(hints[f.name]) in (int, float) and not set(rule_of(f)) & set(NUMERIC_RULES)
    ]
    assert not missing, f"{cls.__name__}: give these a range with setting(ge=..): {missing}"


def test_the_defaults_pass_their_own_rules():
    for cls in CLASSES:
        if all(
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            for f in dataclasses.fields(cls)
        ):
            assert check(cls, dataclasses.asdict(cls())) == cls()


def test_choices_are_the_ones_the_stages_act_on():
    from open_clip_train.params import parse_args

    from treeoflife import images
    from treeoflife.evalsets import labels
    from treeoflife.shards import resize, text
    from treeoflife.sources import bioscan

    assert config.BIOSCAN_PACKAGES == bioscan.PACKAGES
    assert config.EOL_RESIZE_MODES == images.RESIZE_MODES
    assert config.SHARD_RESIZE_MODES == resize.RESIZE_MODES
    assert config.CAPTION_KINDS == text.TEXT_TYPES
    assert tuple(labels.TEXT_TYPE_ALIASES) == config.TEXT_TYPE_ALIASES
    for precision in config.PRECISIONS:
        assert parse_args(["--precision", precision]).precision == precision
    with pytest.raises(SystemExit):
        parse_args(["--precision", "fp64"])


def test_rules_read_as_words():
    assert describe({"ge": 1}) == ">= 1"
    assert describe({"ge": 0, "le": 32}) == "0..32"
    assert describe({"ge": 0, "lt": 1}) == ">= 0 and < 1"
    assert describe({"gt": 0.5}) == "> 0.5"
    assert describe({"choices": ("a", "b")}) == "one of a, b"


def test_a_misspelled_rule_is_refused_when_the_field_is_declared():
    with pytest.raises(TypeError, match="unknown config rule"):
        setting(1, minimum=0)
    with pytest.raises(TypeError, match="path rule"):
        setting(None, path="folder")
