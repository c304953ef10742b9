"""Protocols every suite offers beyond its own: mixed-source training and chronological (past-to-future) windows.

Grammar (``--protocol``):

- ``train-on-GEN[,GEN...]``: train on the union of those generators' training images, evaluate on every generator;
  ``train-on-A,B:eval-on-C,D`` evaluates the named generators only (none of them may be a training generator).
- ``chrono:YYYY-MM``: train on the dated generators released up to that month (inclusive), evaluate the ones
  released after it. ``chrono:YYYY-MM..YYYY-MM``: train on those released within the two months (inclusive).
- Series, one run per window: ``chrono:YYYY-MM,YYYY-MM,...`` (one growing window per cut), ``chrono:growing:STEP``
  (cuts every STEP from the earliest release; each window trains on everything released up to its cut) and
  ``chrono:sliding:STEP`` (each window trains on what was released in the STEP up to its cut); STEP is ``Nm``
  (months) or ``Ny`` (years). A window that would train on the same generators as the one before it is skipped,
  and the series ends at the last cut that leaves a later generator.

Training rows: where every training generator has the suite's training split, that split trains; where none has
(a ``folder`` tree without split folders, a test-only collection, WildRF's test-only platforms), the
generators' images in the evaluation split are split instead: a seeded part held out for model selection
(``train.holdout``), the rest trains, and those generators are not evaluated (their remaining images were trained
on); the run records them as not evaluated.
With two or more training generators the training rows are balanced per generator (``suite.balance=generator``,
the default): each generator gives the same number n of real and of fake images, n the smallest count of any
generator and class, subsampled with the run seed; ``suite.balance=pooled`` trains on every usable image.
The suites' own multi-generator protocols (ProGAN's 4 or 20 classes) keep their pooled union unless
``suite.balance=generator`` is set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from detbench.data.release_dates import ReleaseDates, format_month, load_release_dates, parse_month
from detbench.data.suites import EVAL_PROTOCOL, Protocol, Suite, seeded_rank
from detbench.errors import ConfigError, ProtocolError

if TYPE_CHECKING:
    import pandas as pd

TRAIN_ON = "train-on-"
EVAL_ON = ":eval-on-"
CHRONO = "chrono:"
BALANCE_KEY = "suite.balance"
BALANCES = ("generator", "pooled")
DATES_KEY = "chrono.dates"
GRAMMAR = ("train-on-GEN[,GEN...][:eval-on-GEN,...], chrono:YYYY-MM, chrono:YYYY-MM..YYYY-MM, "
           "chrono:YYYY-MM,YYYY-MM,..., chrono:growing:12m, chrono:sliding:2y")


@dataclass(frozen=True)
class ProtocolOptions:
    """The run settings that shape built protocols: ``suite.balance`` and ``chrono.dates``."""

    balance: str | None = None  # None: the default (generator for built mixes, the suite's own for its protocols)
    dates_file: str | None = None  # None: the shipped table

    def __post_init__(self) -> None:
        if self.balance is not None and self.balance not in BALANCES:
            raise ConfigError(f"{BALANCE_KEY} must be one of {', '.join(BALANCES)}; got {self.balance!r}")

    def dates(self) -> ReleaseDates:
        """The release-date table these options name.

        Returns:
            The shipped table, or the ``chrono.dates`` file's.
        """
        return load_release_dates(self.dates_file)


@dataclass(frozen=True)
class Chrono:
    """A parsed ``chrono:`` name: one window (``cut`` with an optional ``start``) or a series."""

    cuts: tuple[int, ...] = ()  # explicit cuts (a single one: one window)
    start: int | None = None  # a single sliding window's first month
    mode: str | None = None  # "growing" or "sliding" with ``step``
    step: int = 0  # months

    @property
    def is_series(self) -> bool:
        """Whether the name stands for several runs (a list of cuts or a stepped series)."""
        return self.mode is not None or len(self.cuts) > 1


def parse_chrono(name: str | None) -> Chrono | None:
    """Read a ``chrono:`` protocol name.

    Args:
        name: a protocol name.

    Returns:
        The parsed name, or None when ``name`` does not start with ``chrono:``.

    Raises:
        ProtocolError: a malformed ``chrono:`` name (the message shows the grammar).
    """
    if not name or not name.startswith(CHRONO):
        return None
    body = name[len(CHRONO):].strip()
    usage = (f"protocol {name!r}: write chrono:YYYY-MM (one cut), chrono:YYYY-MM..YYYY-MM (one sliding window), "
             "chrono:YYYY-MM,YYYY-MM,... (one run per cut), chrono:growing:STEP or chrono:sliding:STEP (STEP e.g. "
             "12m or 2y)")
    try:
        if body.startswith(("growing:", "sliding:")):
            mode, step_text = body.split(":", 1)
            unit = step_text[-1:].lower()
            count = int(step_text[:-1])
            if unit not in ("m", "y") or count < 1:
                raise ValueError(step_text)
            return Chrono(mode=mode, step=count * (12 if unit == "y" else 1))
        if ".." in body:
            first, last = body.split("..", 1)
            start, cut = parse_month(first), parse_month(last)
            if start > cut:
                raise ValueError(body)
            return Chrono(cuts=(cut,), start=start)
        cuts = tuple(sorted({parse_month(part) for part in body.split(",")}))
        return Chrono(cuts=cuts)
    except ValueError:
        raise ProtocolError(usage) from None


def window_name(cut: int, start: int | None = None) -> str:
    """The protocol name of one chronological window.

    Args:
        cut: the last month of the training releases.
        start: the first month (a sliding window), or None (everything up to ``cut``).

    Returns:
        ``chrono:YYYY-MM`` or ``chrono:YYYY-MM..YYYY-MM``.
    """
    return CHRONO + (f"{format_month(start)}.." if start is not None else "") + format_month(cut)


def series_windows(chrono: Chrono, months: dict[str, int]) -> list[str]:
    """The window names of a series over the dated generators ``months``.

    Args:
        chrono: a parsed series (or single window: returned as its one name).
        months: generator -> release month of the dated generators of the data.

    Returns:
        The window names, in time order.
    """
    if not chrono.is_series:
        return [window_name(chrono.cuts[0], chrono.start)]
    if chrono.mode is None:
        return [window_name(cut) for cut in chrono.cuts]
    if not months:
        return []
    names, previous = [], None
    cut, last = min(months.values()), max(months.values())
    while cut < last:
        start = cut - chrono.step + 1 if chrono.mode == "sliding" else None
        trained = frozenset(g for g, m in months.items() if m <= cut and (start is None or m >= start))
        if trained and trained != previous:
            names.append(window_name(cut, start))
        previous = trained
        cut += chrono.step
    return names


def _template(suite: Suite, generators: list[str]) -> tuple[str, str, tuple[str, ...] | None, float]:
    """The suite's training split, evaluation split and generators and held-out fraction that built protocols copy.

    They come from the suite's default protocol (else its first protocol with training generators) and its
    ``eval`` protocol.
    """
    protocols = suite.all_protocols(generators)
    ref = protocols.get(suite.default_protocol)
    if ref is None or not ref.train_generators:
        ref = next((p for p in protocols.values() if p.train_generators), None)
    evaluation = protocols[EVAL_PROTOCOL]
    fraction = ref.heldout_fraction if ref is not None else Protocol.heldout_fraction
    return (ref.train_split if ref else "train"), evaluation.eval_split, evaluation.eval_generators, fraction


def _names(generators: Any) -> str:
    return ", ".join(generators) or "none"


def _training_split(
    name: str, train: tuple[str, ...], usable: pd.DataFrame, train_split: str, eval_split: str
) -> tuple[str, bool]:
    """The split the training generators train on, and whether it is carved from their evaluation split."""
    mine = usable[usable["generator"].isin(train)]
    with_split = set(mine.loc[mine["split"] == train_split, "generator"])
    if with_split == set(train):
        return train_split, False
    if with_split:
        raise ProtocolError(
            f"protocol {name!r}: {_names(sorted(with_split))} have a {train_split} split and "
            f"{_names(sorted(set(train) - with_split))} have none; train on generators of one kind (those without "
            f"one train on a seeded part of their {eval_split} images)"
        )
    lacking = sorted(set(train) - set(mine.loc[mine["split"] == eval_split, "generator"]))
    if lacking:
        raise ProtocolError(f"protocol {name!r}: {_names(lacking)} have no usable {train_split} or {eval_split} images")
    return eval_split, True


def _balance(options: ProtocolOptions, train: tuple[str, ...]) -> str | None:
    return "generator" if len(train) > 1 and options.balance != "pooled" else None


def build_protocol(suite: Suite, usable: pd.DataFrame, name: str, options: ProtocolOptions) -> Protocol | None:
    """The protocol a ``train-on-...`` or ``chrono:...`` name builds on this data (see the module's grammar).

    Args:
        suite: the suite.
        usable: its usable index rows.
        name: the protocol name.
        options: ``suite.balance`` and ``chrono.dates``.

    Returns:
        The protocol (its ``facts`` say what the run records), or None when ``name`` is neither form.

    Raises:
        ProtocolError: an unknown generator, a generator named to train and to evaluate, a window with nothing
            before or after its cut, a series name (run through ``detbench run``), dates missing for the suite.
    """
    generators = sorted(usable["generator"].unique())
    chrono = parse_chrono(name)
    if chrono is not None:
        if chrono.is_series:
            raise ProtocolError(
                f"protocol {name!r} is a series of runs, one per window: run it with `detbench run` (or "
                f"detbench.run); here, name one window ({', '.join(series_preview(suite, usable, chrono, options))})"
            )
        return _chrono_protocol(suite, usable, name, chrono, options, generators)
    if not name.startswith(TRAIN_ON):
        return None
    body = name[len(TRAIN_ON):]
    train_text, _, eval_text = body.partition(EVAL_ON)
    train = tuple(sorted({g.strip() for g in train_text.split(",") if g.strip()}))
    evaluate = tuple(sorted({g.strip() for g in eval_text.split(",") if g.strip()})) if eval_text else None
    unknown = [g for g in (*train, *(evaluate or ())) if g not in generators]
    if unknown or not train:
        what = f"unknown generator(s) {_names(unknown)}" if unknown else "no generator named"
        raise ProtocolError(f"protocol {name!r}: {what}; the {suite.name} data here has: {_names(generators)}")
    if evaluate is not None and set(train) & set(evaluate):
        raise ProtocolError(
            f"protocol {name!r} names {_names(sorted(set(train) & set(evaluate)))} both to train and to evaluate: "
            "its numbers would not measure unseen generators; drop them from eval-on (or leave out :eval-on- to "
            "evaluate every generator)"
        )
    train_split, eval_split, eval_generators, fraction = _template(suite, generators)
    split, carved = _training_split(name, train, usable, train_split, eval_split)
    if len(train) == 1 and evaluate is None and not carved:
        own = [p for p in suite.all_protocols(generators).values()
               if p.train_generators == train and p.train_suite is None and p.train_split == split]
        if own:  # the suite's own protocol for this generator (the demo's family names): its run, its id
            return own[0]
    canonical = TRAIN_ON + ",".join(train) + (EVAL_ON + ",".join(evaluate) if evaluate else "")
    if carved:
        pool = eval_generators if eval_generators is not None else tuple(generators)
        evaluate = evaluate or tuple(g for g in pool if g not in train)
        if not evaluate:
            raise ProtocolError(
                f"protocol {name!r} trains on every generator of this data and has none left to evaluate: "
                f"{_names(train)} have no separate {train_split} split, so their images train"
            )
    evaluated = evaluate if evaluate is not None else eval_generators
    where = (f"{split} images less a seeded held-out part; no {train_split} split, so not evaluated" if carved
             else f"{split} split")
    balance = _balance(options, train)
    facts = {"kind": "mix", "training_split": split, "carved": carved,
             "not_evaluated": list(train) if carved else []}
    return Protocol(
        name=canonical,
        train_generators=train,
        eval_generators=evaluated,
        train_split=split,
        eval_split=eval_split,
        heldout_fraction=fraction,
        description=f"train on {'+'.join(train)} ({where}"
        + (", balanced per generator" if balance else "")
        + f"), evaluate {'every generator' if evaluated is None else '+'.join(evaluated)} on {eval_split}",
        balance=balance,
        facts=facts,
    )


def dated_generators(
    suite: Suite, usable: pd.DataFrame, options: ProtocolOptions
) -> tuple[dict[str, Any], list[str], ReleaseDates]:
    """The generators a chronological protocol orders: those with evaluation images, split into dated and undated.

    Args:
        suite: the suite.
        usable: its usable index rows.
        options: ``chrono.dates``.

    Returns:
        ``(generator -> Release, undated generators, the table)``.

    Raises:
        ProtocolError: fewer than two generators are dated.
    """
    generators = sorted(usable["generator"].unique())
    _, eval_split, eval_generators, _ = _template(suite, generators)
    has_eval = set(usable.loc[usable["split"] == eval_split, "generator"])
    pool = [g for g in generators if g in has_eval and (eval_generators is None or g in eval_generators)]
    table = options.dates()
    known = table.for_suite(suite.name)
    dated = {g: known[g] for g in pool if g in known}
    undated = [g for g in pool if g not in known]
    if len(dated) < 2:
        where = "the shipped table" if table.origin == "shipped" else table.origin
        raise ProtocolError(
            f"chronological protocols need release dates for at least two of suite {suite.name}'s generators; "
            f"{where} dates {_names(sorted(dated))} of {_names(pool)}: pass --set {DATES_KEY}=FILE, a CSV with "
            "columns generator, released (YYYY-MM), source"
        )
    return dated, undated, table


def series_preview(suite: Suite, usable: pd.DataFrame, chrono: Chrono, options: ProtocolOptions) -> list[str]:
    """The window names of a series on this data.

    Args:
        suite: the suite.
        usable: its usable index rows.
        chrono: the parsed series.
        options: ``chrono.dates``.

    Returns:
        The window names, in time order.
    """
    dated, _, _ = dated_generators(suite, usable, options)
    return series_windows(chrono, {g: r.month for g, r in dated.items()})


def _chrono_protocol(
    suite: Suite, usable: pd.DataFrame, name: str, chrono: Chrono, options: ProtocolOptions, generators: list[str]
) -> Protocol:
    dated, undated, table = dated_generators(suite, usable, options)
    cut, start = chrono.cuts[0], chrono.start
    train = tuple(sorted(g for g, r in dated.items() if r.month <= cut and (start is None or r.month >= start)))
    test = tuple(sorted(g for g, r in dated.items() if r.month > cut))
    by_date = sorted(dated.items(), key=lambda item: (item[1].month, item[0]))
    dates = ", ".join(f"{g} {format_month(r.month)}" for g, r in by_date)
    if not test:
        raise ProtocolError(
            f"protocol {name!r}: no generator of this data was released after {format_month(cut)}, so nothing is "
            f"left to test; choose an earlier cut (dated here: {dates})"
        )
    if not train:
        span = f"between {format_month(start)} and {format_month(cut)}" if start is not None else (
            f"up to {format_month(cut)}")
        raise ProtocolError(f"protocol {name!r}: no generator of this data was released {span}, so nothing trains; "
                            f"choose a later cut (dated here: {dates})")
    train_split, eval_split, _, fraction = _template(suite, generators)
    split, carved = _training_split(name, train, usable, train_split, eval_split)
    balance = _balance(options, train)
    released = {g: format_month(dated[g].month) for g in (*train, *test)}
    span = (f"from {format_month(start)} " if start is not None else "") + f"up to {format_month(cut)}"
    facts = {
        "kind": "chrono",
        "window": window_name(cut, start),
        "cut": format_month(cut),
        "start": format_month(start) if start is not None else None,
        "train": {g: released[g] for g in train},
        "test": {g: released[g] for g in test},
        "undated": undated,
        "synthetic_dates": sorted(g for g in (*train, *test) if dated[g].synthetic),
        "sources": {g: dated[g].source for g in (*train, *test)},
        "dates": {"table": table.origin, "sha256": table.sha256},
        "training_split": split,
        "carved": carved,
        "not_evaluated": [],
    }
    return Protocol(
        name=window_name(cut, start),
        train_generators=train,
        eval_generators=test,
        train_split=split,
        eval_split=eval_split,
        heldout_fraction=fraction,
        description=f"train on the generators released {span} ("
        + ", ".join(f"{g} {released[g]}" for g in train)
        + f"; {split + ' images less a seeded held-out part' if carved else split + ' split'}"
        + (", balanced per generator" if balance else "")
        + "), evaluate the later ones on " + eval_split + " ("
        + ", ".join(f"{g} {released[g]}" for g in test) + ")",
        balance=balance,
        facts=facts,
    )


def with_balance(protocol: Protocol, options: ProtocolOptions) -> Protocol:
    """A suite's own protocol with ``suite.balance=generator`` applied when it was set explicitly.

    Args:
        protocol: one of the suite's protocols.
        options: the run's protocol options.

    Returns:
        The protocol, balanced per generator when it trains on several generators and the user asked for it.
    """
    if options.balance == "generator" and len(protocol.train_generators) > 1:
        return dataclasses.replace(protocol, balance="generator")
    return protocol


def per_class_count(available: dict[str, dict[int, int]]) -> int:
    """The images each generator gives per class under ``balance=generator``: the smallest count of any generator
    and class.

    Args:
        available: generator -> label -> usable training images.

    Returns:
        The count (0 when some generator lacks a class).
    """
    return min((available.get(g, {}).get(label, 0) for g in available for label in (0, 1)), default=0)


def balance_rows(rows: pd.DataFrame, generators: tuple[str, ...], seed: int) -> pd.DataFrame:
    """The training rows balanced per generator: :func:`per_class_count` real and fake images from each generator,
    chosen by a seeded hash of each path (independent of listing order).

    Args:
        rows: the usable training rows.
        generators: the training generators.
        seed: the run seed.

    Returns:
        The kept rows, in their original order.

    Raises:
        ProtocolError: a training generator has no usable image of a class.
    """
    available = {g: {label: int(((rows["generator"] == g) & (rows["label"] == label)).sum()) for label in (0, 1)}
                 for g in generators}
    n = per_class_count(available)
    if n == 0:
        lacking = [f"{g} ({c[0]} real, {c[1]} fake)" for g, c in available.items() if min(c.values()) == 0]
        raise ProtocolError(
            f"{BALANCE_KEY}=generator takes as many real and fake training images from each generator as the smallest "
            f"has, and {', '.join(lacking)} lack a class; pass --set {BALANCE_KEY}=pooled or train on other generators"
        )
    keep: list[Any] = []
    for (_, _), group in rows.groupby(["generator", "label"], sort=True):
        ranked = sorted(group.index, key=lambda i: (seeded_rank(seed, str(group.at[i, "path"])), group.at[i, "path"]))
        keep.extend(ranked[:n])
    chosen = set(keep)
    return rows.loc[[i for i in rows.index if i in chosen]]
