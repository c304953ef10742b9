"""Reading the tables users hand to detbench (file lists, score files)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from detbench.data.tables import read_table
from detbench.errors import InputError


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path, suffix: str, sep: str) -> None:
    """pandas would read the second ``score`` as ``score.1`` and the first would be used without a word."""
    path = tmp_path / f"scores{suffix}"
    path.write_text(sep.join(["path", "score", "score"]) + "\n" + sep.join(["a.png", "0.1", "0.9"]) + "\n")
    with pytest.raises(InputError, match="names 'score' more than once"):
        read_table(path, "score file", InputError)


def test_cells_stay_text_and_lines_are_counted_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("\ufeffpath,label\n0012.png,1\nb.png,0\n", encoding="utf-8")
    table, where = read_table(path, "file list", InputError)
    assert list(table.columns) == ["path", "label"] and table["path"].tolist() == ["0012.png", "b.png"]
    assert [where(i) for i in range(2)] == [2, 3]


def test_line_numbers_count_blank_lines_and_multi_line_cells(tmp_path: Path) -> None:
    """A message's ``line N`` is the line the row starts on in an editor, whatever blank lines come before it."""
    path = tmp_path / "scores.csv"
    path.write_text('path,score\n\na.png,0.1\n"b\nc.png",0.2\n\n\nd.png,0.3\n', encoding="utf-8")
    table, where = read_table(path, "score file", InputError)
    assert table["path"].tolist() == ["a.png", "b\nc.png", "d.png"]
    assert [where(i) for i in range(3)] == [3, 4, 8]


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_cells_over_128_kib_are_read(tmp_path: Path, suffix: str, sep: str) -> None:
    """Python's csv module stops at 128 KiB per cell (a prompt, an embedded workflow JSON): it was a traceback."""
    import csv

    big = "w" * 300_000
    path = tmp_path / f"scores{suffix}"
    path.write_text(sep.join(["path", "score", "prompt"]) + "\n" + sep.join(["a.png", "0.1", big]) + "\n"
                    + sep.join(["b.png", "0.2", "x"]) + "\n")  # fmt: skip
    limit = csv.field_size_limit()
    table, where = read_table(path, "score file", InputError)
    assert table["prompt"].tolist() == [big, "x"] and [where(i) for i in range(2)] == [2, 3]
    assert csv.field_size_limit() == limit  # the process's setting is restored


def test_only_the_columns_asked_for_are_read(tmp_path: Path) -> None:
    frame = pd.DataFrame({"path": ["a.png"], "score": [0.5], "prompt": ["long"]})
    for suffix in (".csv", ".parquet", ".jsonl"):
        path = tmp_path / f"s{suffix}"
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        elif suffix == ".parquet":
            frame.to_parquet(path)
        else:
            frame.to_json(path, orient="records", lines=True)
        table, _ = read_table(path, "score file", InputError, columns=lambda names: [n for n in names if n != "prompt"])
        assert list(table.columns) == ["path", "score"], suffix
