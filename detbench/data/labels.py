"""Label cells of file lists, Parquet shards and score files read as 0 (real) / 1 (fake), by explicit values."""

from __future__ import annotations

from detbench.errors import ConfigError

REAL_VALUES = ("0", "real")  # the label cells read as real unless a suite is told otherwise
FAKE_VALUES = ("1", "fake")


class LabelValues:
    """Maps the label cells of a file list or a Parquet shard to 0 (real) / 1 (fake), by explicit values only
    (compared case-insensitively after stripping), never by sort order: some datasets call fakes 0.
    """

    def __init__(self, real: tuple[str, ...], fake: tuple[str, ...]) -> None:
        self.real = {str(v).strip().lower() for v in real}
        self.fake = {str(v).strip().lower() for v in fake}
        both = sorted(self.real & self.fake)
        if both:

            raise ConfigError(f"label value(s) {', '.join(both)} are listed as both real and fake")
        if not self.real or not self.fake:

            raise ConfigError("real_values and fake_values each need at least one value")

    def __call__(self, value: object) -> int | None:
        """The label of one cell.

        Args:
            value: a label cell (a string, number, bool, None or NaN).

        Returns:
            0 (real), 1 (fake), or None for a value that is neither (an empty cell included).
        """
        if value is None or (isinstance(value, float) and value != value):
            return None
        if isinstance(value, bytes):  # a binary Parquet column
            value = value.decode("utf-8", "replace")
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = str(value).strip().lower()
        if text in self.real:
            return 0
        if text in self.fake:
            return 1
        return None

    def describe(self) -> str:
        """The accepted values, for messages.

        Returns:
            ``real: ...; fake: ...`` with each side's values sorted.
        """
        return f"real: {', '.join(sorted(self.real))}; fake: {', '.join(sorted(self.fake))}"
