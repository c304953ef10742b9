from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from detbench.config import ConfigError, apply_overrides, coerce, parse_set_args


@dataclass(frozen=True)
class Mask:
    strategy: Literal["tam", "random", "none"] = "tam"
    ratio: float = 0.4


@dataclass(frozen=True)
class Cfg:
    lr: float = 1e-4
    steps: int = 10
    flip: bool = True
    name: str | None = None
    grid: tuple[float, ...] = (1.0, 2.0)
    mask: Mask = field(default_factory=Mask)


def test_overrides_coerce_types_and_nested_keys() -> None:
    cfg = apply_overrides(
        Cfg(), parse_set_args(["lr=3e-5", "steps=20", "flip=no", "mask.strategy=random", "grid=0.1,1,10", "name=none"])
    )
    assert cfg == Cfg(lr=3e-5, steps=20, flip=False, name=None, grid=(0.1, 1.0, 10.0), mask=Mask("random"))


@pytest.mark.parametrize(
    "item, message",
    [
        ("lrr=1", "unknown config key 'lrr'.*Valid keys: flip, grid, lr, mask.ratio, mask.strategy"),
        ("steps=1.5", "steps must be int"),
        ("flip=maybe", "flip must be true or false"),
        ("mask.strategy=everything", "must be one of tam, random, none"),
        ("lr=nan", "lr must be a finite number"),
        ("lr=1e309", "lr must be a finite number"),
        ("lr=-inf", "lr must be a finite number"),
        ("grid=1,nan", "grid must be a finite number"),
        ("steps=1e400", "steps must be int"),
    ],
)
def test_bad_overrides_fail_with_the_valid_choices(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Cfg(), parse_set_args([item]))


def test_malformed_and_repeated_set_items() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_args(["lr"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_set_args(["lr=1", "lr=2"])


def test_coerce_rejects_bool_for_int() -> None:
    with pytest.raises(ConfigError):
        coerce(True, int)
    assert coerce("0x10", int) == 16
