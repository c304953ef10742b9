r"""Per-image scores computed outside detbench (a closed API, a commercial tool, a colleague's code): reading a score
file, checking it, and matching it to a suite's images.

A score file is a table (CSV, TSV, JSON, JSON lines or Parquet: :mod:`detbench.data.tables`) with one row per image:

- a key: ``path`` relative to the suite root, as ``detbench index`` lists it (an absolute path under the root is
  accepted; ``\`` separators are read as ``/``), or ``filename`` (grip-unina's name for the same), or
  ``image_id`` (detbench's content id of the image); the first of these present, unless ``key_column`` names one;
- a score (column ``score`` unless ``score_column`` names another): P(fake) in [0, 1], or a raw logit with
  ``logits`` (P(fake) = sigmoid).

An optional ``label`` column (0/1 or real/fake, read as a file list's labels are) is never used for the metrics
(the suite's labels are), but images it labels otherwise than the suite are reported: the paths may name other
images than the scores are of, or the file may call fakes 0.

Nothing is guessed. A value outside [0, 1] without ``logits`` is an error. Rows without a key, values that are not
numbers, and keys given more than once are reported with counts and examples; a key given twice with the same score
is kept once, with different scores it stays unscored (see :class:`ScoreFile`).
"""

from __future__ import annotations

import difflib
import functools
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from detbench.data.images import NO_SCORE
from detbench.data.labels import FAKE_VALUES, REAL_VALUES, LabelValues
from detbench.data.tables import TABLE_SUFFIXES, listing, read_table
from detbench.errors import DataError, InputError
from detbench.probabilities import sigmoid
from detbench.store import sha256_of_file

KEY_COLUMNS = ("path", "filename", "image_id")  # the key used when none is named: the first present
ID_COLUMN = "image_id"
LABEL_COLUMN = "label"  # optional: checked against the suite's labels, never used for the metrics
SHOWN = 5  # examples per problem


def not_in_file(path: Path) -> str:
    """The status of an image the score file does not list.

    Args:
        path: the score file.

    Returns:
        ``no_score: not in <file name>``.
    """
    return f"{NO_SCORE}: not in {path.name}"


@dataclass(frozen=True)
class ScoreFile:
    """A checked score file.

    ``scores`` maps each usable key to P(fake); ``unusable`` maps keys the file names but gives no usable score
    for (no number, or different scores for the same key) to the status their images get; ``problems`` are the
    warnings to show (counts and examples); ``labels`` maps keys to the 0 (real) / 1 (fake) of the file's
    ``label`` column, where it has one (compared with the suite's by :func:`match_problems`).
    """

    path: Path
    sha256: str
    key_column: str
    score_column: str
    logits: bool
    relative_to_file: bool  # relative paths were read relative to the file's folder (made absolute), not the root
    rows: int
    scores: dict[str, float]
    unusable: dict[str, str]
    problems: tuple[str, ...]
    labels: dict[str, int] = field(default_factory=dict)
    _under: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def by_id(self) -> bool:
        """Whether rows match images by detbench content id (else by path relative to the suite root)."""
        return self.key_column == ID_COLUMN

    def identity(self, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """What of the file changes a number (its bytes and how they are read); never its path.

        Args:
            root: the suite root; needed when relative paths are read relative to the file's folder, whose place
                relative to the root then says which images they name.

        Returns:
            ``sha256``, ``key_column``, ``score_column`` and ``logits``; with :attr:`relative_to_file`, also
            ``paths_relative_to``: the file's folder relative to the root (``..`` where it is outside).
        """
        out: dict[str, Any] = {
            "sha256": self.sha256,
            "key_column": self.key_column,
            "score_column": self.score_column,
            "logits": self.logits,
        }
        if self.relative_to_file and not self.by_id:
            if root is None:
                raise ValueError("the identity of a score file read relative to its folder needs the suite root")
            folder = os.path.relpath(self.path.parent.resolve(), Path(root).resolve())
            out["paths_relative_to"] = PurePosixPath(Path(folder).as_posix()).as_posix()
        return out

    def under(self, root: str | os.PathLike[str]) -> tuple[dict[str, float], dict[str, str], list[str]]:
        """The file's keys as the index of a suite rooted at ``root`` writes them (cached per root).

        Args:
            root: the suite root the index was built on; ignored when the file matches by ``image_id``.

        Returns:
            ``(scores, unusable, outside)``: like :attr:`scores` and :attr:`unusable` with absolute paths under
            ``root`` made relative, and the absolute paths that are not under ``root``.
        """
        if self.by_id:
            return self.scores, self.unusable, []
        cached = self._under.get(str(root))
        if cached is None:
            cached = _relative_to(self, Path(root))
            self._under[str(root)] = cached
        return cached


def _labels_under(scores: ScoreFile, root: Path) -> dict[str, int]:
    """:attr:`ScoreFile.labels` keyed as the index of a suite rooted at ``root`` writes its paths (absolute paths
    under ``root`` made relative, others dropped).
    """
    if scores.by_id:
        return scores.labels
    bases = _bases(root)
    relative = ((_relative_key(key, bases), label) for key, label in scores.labels.items())
    return {key: label for key, label in relative if key is not None}


def read_score_file(
    path: str | os.PathLike[str],
    *,
    score_column: str = "score",
    key_column: str = "",
    logits: bool = False,
    relative_to_file: bool = False,
) -> ScoreFile:
    """Read and check a score file (parsed once per process while its bytes are unchanged).

    Args:
        path: the file (CSV, TSV, JSON, JSON lines or Parquet).
        score_column: the column holding P(fake) (or logits).
        key_column: ``path``, ``filename``, ``image_id`` or another path column; empty: the first of
            :data:`KEY_COLUMNS` present.
        logits: the scores are raw logits; P(fake) = sigmoid(score).
        relative_to_file: relative paths are relative to the file's folder (as ``detbench predict --export``,
            grip-unina's ``main.py`` and ForensicHub's lists write them), not to the suite root.

    Returns:
        The checked :class:`ScoreFile`.

    Raises:
        InputError: the file is missing, unreadable, empty, or lacks the key or score column.
        DataError: a score outside [0, 1] without ``logits``.
    """
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise InputError(f"score file {path} {'is not a file' if path.exists() else 'does not exist'}")
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"score file {path}: unknown format {path.suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}")
    return _read(path, sha256_of_file(path), score_column, key_column, logits, relative_to_file)


@functools.lru_cache(maxsize=8)
def _read(path: Path, sha256: str, score_column: str, key_column: str, logits: bool, relative_to_file: bool
          ) -> ScoreFile:
    import pandas as pd

    header: list[str] = []

    def needed(names: list[str]) -> list[str]:  # only the columns used are loaded (a prompt column may be GBs)
        header.extend(names)
        return [n for n in names if n in {key_column, *KEY_COLUMNS, score_column, LABEL_COLUMN}]

    table, position = read_table(path, "score file", InputError, columns=needed)
    word = {".parquet": "row", ".json": "entry"}.get(path.suffix.lower(), "line")

    def where(i: int) -> str:
        return f"{word} {position(i)}"

    table.columns = [str(c) for c in table.columns]
    columns = [str(c) for c in header]
    key = key_column or next((c for c in KEY_COLUMNS if c in columns), "")
    if key not in columns:
        wanted = repr(key_column) if key_column else " or ".join(map(repr, KEY_COLUMNS))
        raise InputError(
            f"score file {path} has no column {wanted} (columns: {', '.join(columns) or 'none'}){_hint(key, columns)}. "
            "Each row needs the image's path relative to the suite root (or its image_id); name the column with "
            "--key-column"
        )
    if score_column not in columns:
        exported = [c for c in columns if re.fullmatch(r".+@[0-9a-f]{16}", c)]  # detbench predict --export columns
        hint = (f"; a `detbench predict --export` file holds one column per run: pass --score-column {exported[0]!r}"
                if exported else _hint(score_column, columns))
        raise InputError(
            f"score file {path} has no column {score_column!r} (columns: {', '.join(columns)}){hint}. Name the "
            "column of P(fake) (or of logits, with --logits) with --score-column"
        )
    if table.empty:
        raise InputError(f"score file {path} has no rows")
    by_id = key == ID_COLUMN
    base = path.parent.resolve().as_posix() if relative_to_file and not by_id else None
    if base is None:
        keys = _keys(table[key], by_id)
    else:  # paths relative to the file's folder: made absolute one by one
        keys = pd.Series([_key(v, by_id, base) for v in table[key]], dtype=object)
    raw = table[score_column]
    text = raw.astype(str).str.strip() if raw.dtype == object else raw
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    problems: list[str] = []
    if not logits:
        outside = np.flatnonzero(~np.isnan(values) & ((values < 0) | (values > 1)))
        if len(outside):
            shown = listing([f"{where(i)}: {raw.iloc[i]}" for i in outside[:SHOWN]], SHOWN, len(outside))
            raise DataError(
                f"score file {path}: {len(outside)} values of {score_column} are outside [0, 1] ({shown}). Scores "
                "must be P(fake); pass --logits if they are raw logits (P(fake) = sigmoid(score))"
            )
    probabilities = sigmoid(values) if logits else values
    no_key = np.flatnonzero(keys.isna().to_numpy())
    if len(no_key):
        problems.append(
            f"score file {path.name}: {len(no_key)} rows have no {key} and are ignored "
            f"({listing([where(i) for i in no_key[:SHOWN]], SHOWN, len(no_key))})"
        )
    frame = pd.DataFrame({"key": keys, "p": probabilities, "pos": np.arange(len(keys))})[keys.notna().to_numpy()]
    not_numbers = frame[np.isnan(frame["p"].to_numpy())]
    if len(not_numbers):
        shown = listing([f"{where(i)}: {raw.iloc[i]!r}" for i in not_numbers["pos"][:SHOWN]], SHOWN, len(not_numbers))
        problems.append(
            f"score file {path.name}: {len(not_numbers)} rows give no number in {score_column} (empty, NaN or "
            f"text: {shown}): their images stay unscored, left out of the metrics"
        )
    scores, unusable = _merge(frame, path.name, problems)
    labels: dict[str, int] = {}
    if LABEL_COLUMN in columns and LABEL_COLUMN not in (key, score_column):
        read_label = LabelValues(REAL_VALUES, FAKE_VALUES)
        cells = table[LABEL_COLUMN]
        if pd.api.types.is_string_dtype(cells):  # text (CSV/TSV): compared as LabelValues does, without a call per row
            lowered = cells.astype("string").str.strip().str.lower()
            found = np.where(lowered.isin(read_label.real), 0, np.where(lowered.isin(read_label.fake), 1, -1))
        else:
            found = np.array([-1 if (label := read_label(v)) is None else label for v in cells], dtype=np.int64)
        usable = (found >= 0) & keys.notna().to_numpy()
        labels = dict(zip(keys[usable], found[usable].tolist(), strict=True))
    return ScoreFile(
        path=path,
        sha256=sha256,
        key_column=key,
        score_column=score_column,
        logits=logits,
        relative_to_file=relative_to_file,
        rows=len(table),
        scores=scores,
        unusable=unusable,
        problems=tuple(problems),
        labels=labels,
    )


def _merge(frame: Any, name: str, problems: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Scores and unusable keys of ``frame`` (columns key, p), with repeated keys reported: the same score twice is
    kept once; different scores leave the image unscored.
    """
    repeated = frame.duplicated("key", keep=False).to_numpy()
    single = frame[~repeated]
    number = ~np.isnan(single["p"].to_numpy())  # values are in [0, 1] here (logits went through the sigmoid)
    scores = dict(zip(single["key"][number], single["p"][number].astype(float), strict=True))
    unusable = {k: f"{NO_SCORE}: {name} gives no number for it" for k in single["key"][~number]}
    if repeated.any():
        groups = frame[repeated].groupby("key", sort=False)["p"]
        summary = groups.agg(distinct=lambda s: s.nunique(dropna=False), first="first", n="size")
        same = summary[summary["distinct"] == 1]
        differ = summary[summary["distinct"] > 1]
        for key, p in same["first"].items():
            if np.isnan(p):
                unusable[key] = f"{NO_SCORE}: {name} gives no number for it"
            else:
                scores[key] = float(p)
        for key, n in differ["n"].items():
            unusable[key] = f"{NO_SCORE}: {name} gives it {n} different scores"
        if len(same):
            problems.append(
                f"score file {name}: {len(same)} images are listed more than once with the same score (kept once), "
                f"e.g. {listing(list(same.index), SHOWN)}"
            )
        if len(differ):
            examples = [f"{k} ({', '.join(f'{v:.4g}' for v in groups.get_group(k))})" for k in differ.index[:SHOWN]]
            problems.append(
                f"score file {name}: {len(differ)} images are listed more than once with different scores: they "
                f"stay unscored, left out of the metrics (nothing is chosen for you), e.g. {listing(examples, SHOWN)}"
            )
    return scores, unusable


def _relative_to(scores: ScoreFile, root: Path) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """:meth:`ScoreFile.under` without the cache."""
    bases = _bases(root)
    outside: list[str] = []

    def relative(key: str) -> str | None:
        rel = _relative_key(key, bases)
        if rel is None:
            outside.append(key)
        return rel

    if not any(k.startswith("/") for k in (*scores.scores, *scores.unusable)):  # keys are POSIX paths already
        return scores.scores, scores.unusable, []
    rel_scores: dict[str, float] = {}
    rel_unusable: dict[str, str] = {}
    for key, p in scores.scores.items():
        rel = relative(key)
        if rel is None:
            continue
        if rel in rel_scores and rel_scores[rel] != p:  # the same image by its absolute and relative path
            rel_unusable[rel] = f"{NO_SCORE}: {scores.path.name} gives it 2 different scores"
        rel_scores[rel] = p
    for key, reason in scores.unusable.items():
        rel = relative(key)
        if rel is not None:
            rel_unusable[rel] = reason
    for rel in rel_unusable:
        rel_scores.pop(rel, None)
    return rel_scores, rel_unusable, outside


def _bases(root: Path) -> set[PurePosixPath]:
    """The suite root as written and resolved: absolute keys under either are images of the suite."""
    return {PurePosixPath(Path(root).as_posix()), PurePosixPath(Path(root).resolve().as_posix())}


def _relative_key(key: str, bases: set[PurePosixPath]) -> str | None:
    """``key`` relative to the first of ``bases`` it is under (a relative key as it is); None if it is outside."""
    if not key.startswith("/"):  # a relative POSIX path (what PurePosixPath.is_absolute tests), without the object
        return key
    pure = PurePosixPath(key)
    for base in bases:
        if pure.is_relative_to(base):
            return pure.relative_to(base).as_posix()
    return None


_NORMALISED_BY_PATH = r"//|/\./|^\./|/$|/\.$|^\.$|#"  # what PurePosixPath would change (and locators): the slow path


def _keys(cells: Any, by_id: bool) -> Any:
    """:func:`_key` of every cell of a key column, as an object Series (None for empty cells); text columns are
    handled column-wise, other cells (bytes, numbers) one by one.
    """
    import pandas as pd

    if not pd.api.types.is_string_dtype(cells):
        return pd.Series([_key(v, by_id) for v in cells], dtype=object)
    text = cells.astype("string").str.strip()
    if not by_id:
        text = text.str.replace("\\", "/", regex=False)
    empty = (text.isna() | (text == "")).to_numpy(dtype=bool)
    keys = np.array(text.astype(object).to_numpy(), dtype=object)  # writable
    if not by_id:
        slow = text.str.contains(_NORMALISED_BY_PATH, regex=True).fillna(False).to_numpy(dtype=bool) & ~empty
        keys[slow] = [_key(v, by_id) for v in keys[slow]]
    keys[empty] = None
    return pd.Series(keys, dtype=object)


def _key(value: Any, by_id: bool, base: str | None = None) -> str | None:
    """A key cell as the index writes it: an image id as text, a path as a normalised POSIX path (a relative one
    made absolute under ``base`` when given); None if empty.
    """
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bytes):  # a Parquet binary column
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip()
    if not text:
        return None
    if by_id:
        return text
    text = text.replace("\\", "/")
    suffix = ""
    if "#" in text:  # an image inside a Parquet shard: data/x.parquet#image:000000042
        text, _, rest = text.partition("#")
        suffix = "#" + rest
    if base is not None and not PurePosixPath(text).is_absolute():
        return posixpath.normpath(f"{base}/{text}") + suffix
    return PurePosixPath(text).as_posix().removeprefix("./") + suffix


def _hint(name: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=1) if name else []
    return f"; did you mean {close[0]!r}?" if close else ""


def match_problems(scores: ScoreFile, index_rows: Any, root: Path, suite: str) -> list[str]:
    """What the file says about images the suite does not have, as warnings (counts and examples).

    Args:
        scores: the checked score file.
        index_rows: the suite's index rows (every image, usable or not).
        root: the suite root the index was built on.
        suite: the suite's name, for the messages.

    Returns:
        Warnings: keys that match no image of the index, scores for images the index marks unusable.

    Raises:
        DataError: no key of the file matches any image of the suite (paths relative to another folder, say).
    """
    scored, unusable, outside = scores.under(root)
    column = ID_COLUMN if scores.by_id else "path"
    known = set(index_rows[column].dropna().astype(str))
    keys = [*scored, *unusable]
    unknown = [k for k in keys if k not in known] + outside
    if len(unknown) == len(keys) + len(outside):
        example = index_rows[column].dropna().astype(str).head(2).tolist()
        how = (
            "image_id values are detbench's content ids (the image_id column of `detbench index`, or of "
            "detbench.index()); match by path instead with a path column"
            if scores.by_id
            else f"paths must be relative to the suite root {root}, as `detbench index` lists them, or to the score "
            f"file's folder ({'as read here' if scores.relative_to_file else '--paths-relative-to file'})"
        )
        raise DataError(
            f"no {column} of score file {scores.path} matches an image of {suite}: the file has e.g. "
            f"{listing(unknown, 2)}; the index has e.g. {listing(example, 2)}. {how}"
        )
    problems = []
    if unknown:
        problems.append(
            f"score file {scores.path.name}: {len(unknown)} of its {len(keys) + len(outside)} images are not "
            f"images of {suite} under {root} (ignored), e.g. {listing(unknown, SHOWN)}"
        )
    problems.extend(_label_problems(scores, index_rows, root, suite))
    statuses = index_rows.loc[(index_rows["status"] != "ok").to_numpy(), [column, "status"]].set_index(column)["status"]
    unusable_scored = statuses[[key in scored for key in statuses.index]]  # few rows: the index's unusable ones
    if len(unusable_scored):
        reasons = unusable_scored.str.split(":").str[0].value_counts()
        problems.append(
            f"score file {scores.path.name}: {len(unusable_scored)} of its images are unusable in the {suite} index "
            f"({', '.join(f'{n} {r}' for r, n in reasons.items())}) and are skipped as for every detector, e.g. "
            f"{listing(list(unusable_scored.index), SHOWN)}"
        )
    return problems


def _label_problems(scores: ScoreFile, index_rows: Any, root: Path, suite: str) -> list[str]:
    """A warning if the file's ``label`` column calls some of the suite's images otherwise than the suite does."""
    labels = _labels_under(scores, root)
    if not labels:
        return []
    column = ID_COLUMN if scores.by_id else "path"
    rows = index_rows[[column, "label"]]
    rows = rows[~rows[column].duplicated().to_numpy()]  # the first row of an image listed under several generators
    rows = rows[rows["label"].isin([0, 1]).to_numpy()]
    common = 0
    suite_label: dict[str, int] = {}  # of the images the file labels otherwise
    for key, label in zip(rows[column], rows["label"], strict=True):  # one index row at a time: no copy of keys
        given = labels.get(key)
        if given is not None:
            common += 1
            if given != label:
                suite_label[key] = int(label)
    if not suite_label:
        return []
    wrong = [k for k in labels if k in suite_label]  # in the file's order
    word = {0: "real", 1: "fake"}
    examples = [f"{k} (file: {word[labels[k]]}, {suite}: {word[suite_label[k]]})" for k in wrong[:SHOWN]]
    return [
        f"score file {scores.path.name}: its {LABEL_COLUMN} column disagrees with {suite} for {len(wrong)} of its "
        f"{common} images with a label, e.g. {listing(examples, SHOWN, len(wrong))}; the suite's labels are "
        "used. Check that the paths name the images the scores are of, and that the file calls fakes 1"
    ]
