"""What the CLI prints, and where.

* `--json`: exactly one JSON document on stdout (the API's own shape), nothing else there.
* Otherwise for people: Rich tables and key/value blocks when stdout is a terminal; when it is piped,
  plain lines without colour (a table becomes a tab-separated header and rows, key/value `key: value`).
* Notes, progress and errors go to stderr, so stdout stays what a pipe wants.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (the API's shape) on stdout.")
]

# a table column: its header and how to get the cell from a row
Column = tuple[str, Callable[[Any], Any]]


def text(value: Any) -> str:
    """A cell or value as people read it: `-` for nothing, lists joined, objects as compact JSON."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(text(item) for item in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def key(name: str) -> Callable[[Any], Any]:
    """A column that shows the row's field `name`."""
    return lambda row: row.get(name)


class Output:
    """The printing side of one command run."""

    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json

    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        # colour exactly when the stream is a terminal, whatever FORCE_COLOR says
        return Console(highlight=False, soft_wrap=False, force_terminal=sys.stdout.isatty())

    @cached_property
    def stderr(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True, force_terminal=sys.stderr.isatty())

    @property
    def rich(self) -> bool:
        """Tables and colour: only when stdout is a terminal."""
        return sys.stdout.isatty()

    # -- machine output -----------------------------------------------------------------------------

    def json(self, document: Any) -> None:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        sys.stdout.flush()

    def raw(self, content: bytes) -> None:
        """Bytes as they are (a function's answer), flushed at once (streams)."""
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()

    def result(self, document: Any, human: Callable[[], object] | str) -> None:
        """--json: `document`; otherwise `human()` renders it (a string: that one line)."""
        if self.as_json:
            self.json(document)
        elif isinstance(human, str):
            self.line(human)
        else:
            human()

    def listing(self, document: dict[str, list[Any]], columns: Sequence[Column], *, empty: str) -> None:
        """A list answer such as {"functions": [...]}: --json the document, otherwise a table of its list."""
        (rows,) = document.values()
        self.result(document, lambda: self.table(columns, rows, empty=empty))

    # -- human output -------------------------------------------------------------------------------

    def fields(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """A key/value block."""
        pairs = list(pairs)
        if not self.rich:
            for name, value in pairs:
                sys.stdout.write(f"{name}: {text(value)}\n")
            sys.stdout.flush()
            return
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column(overflow="fold")
        for name, value in pairs:
            grid.add_row(name, text(value))
        self.console.print(grid)

    def table(self, columns: Sequence[Column], rows: Iterable[Any], *, empty: str = "nothing") -> None:
        """A table of rows; piped, a tab-separated header line and one line per row."""
        rows = list(rows)
        cells = [[text(get(row)) for _, get in columns] for row in rows]
        if not self.rich:
            for line in [[header for header, _ in columns], *cells]:
                sys.stdout.write("\t".join(line) + "\n")
            sys.stdout.flush()
            return
        if not rows:
            self.note(f"({empty})")
            return
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for header, _ in columns:
            table.add_column(header, overflow="fold")
        for line in cells:
            table.add_row(*line)
        self.console.print(table)

    def line(self, message: str) -> None:
        """One plain line on stdout (a value a script may capture, e.g. a request id)."""
        sys.stdout.write(message + "\n")
        sys.stdout.flush()

    # -- stderr -------------------------------------------------------------------------------------

    def note(self, message: str) -> None:
        """A remark for the person at the terminal (never on stdout)."""
        self.stderr.print(message, style="dim", markup=False)

    def error(self, message: str) -> None:
        self.stderr.print(f"Error: {message}", style="bold red", markup=False)
