"""A table as numbers (cells keep mean, std and n), rendered to Markdown, LaTeX and CSV.

Builders in `tables.py` decide which cell is bold and which carries a significance mark, from the
numbers; rendering only formats. The CSV is long format (one line a cell, numbers unformatted) so
other tools can read it back without parsing "76.1 ± 0.2".
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from gsam_repro.fsio import atomic_write_text

MISSING = "—"
# Scale a table down to the text width when it is wider, keep it as it is otherwise.
FIT_OPEN = "\\noindent\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"


@dataclass
class Cell:
    """One table cell. With `n` set it is a statistic over seeds (mean `value`, `std`, `n`);
    otherwise a plain number formatted by `kind`, or `text` when given."""

    value: float | None = None
    std: float | None = None
    n: int | None = None
    text: str | None = None
    kind: str = "acc"  # acc | delta | p | int | seconds | float | sci
    bold: bool = False
    mark: str = ""

    @property
    def is_number(self) -> bool:
        return self.value is not None and not math.isnan(self.value)


def _number(value: float, kind: str) -> str:
    if kind == "acc":
        return f"{value:.2f}"
    if kind == "delta":
        value = round(value, 2) or 0.0  # no "-0.00"
        return f"{value:+.2f}"
    if kind == "p":
        return "<0.001" if value < 0.001 else f"{value:.3f}"
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "seconds":
        return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"
    if kind == "sci":
        return f"{value:.3g}"
    return f"{value:.4g}"


def format_cell(cell: Cell | None) -> tuple[str, str, str]:
    """(main, spread, count) strings: "76.10", "0.05", "3"; empty strings where absent."""
    if cell is None:
        return MISSING, "", ""
    if cell.text is not None and not cell.is_number:
        return cell.text, "", ""
    if not cell.is_number:
        return MISSING, "", "" if cell.n is None else str(cell.n)
    main = _number(float(cell.value), cell.kind)
    spread = ""
    if cell.std is not None and not math.isnan(cell.std):
        spread = _number(float(cell.std), "acc" if cell.kind == "delta" else cell.kind)
    count = "" if cell.n is None else str(cell.n)
    if cell.text:
        main = f"{main} {cell.text}"
    return main, spread, count


def cell_markdown(cell: Cell | None) -> str:
    main, spread, count = format_cell(cell)
    out = main
    if spread:
        out += f" ± {spread}"
    if count:
        out += f" ({count})"
    if cell is not None and cell.mark:
        out += f" {cell.mark}"
    if cell is not None and cell.bold and main != MISSING:
        out = f"**{out}**"
    return out


# Characters LaTeX needs escaped, and the Unicode our labels use, as LaTeX.
_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "α": r"$\alpha$", "ρ": r"$\rho$", "λ": r"$\lambda$", "Δ": r"$\Delta$",
    "×": r"$\times$", "†": r"$^\dagger$", "—": "--", "≥": r"$\geq$", "≤": r"$\leq$",
    "·": r"$\cdot$", "→": r"$\to$", "−": "-", "<": r"$<$", ">": r"$>$",
}


# Names our labels write in Unicode that read as math (LaTeX and matplotlib's mathtext alike),
# longest first so "f_p + λh" wins over "f_p".
MATH_PHRASES = {
    "f_p + λh": r"f_p + \lambda h", "f_p − f": r"f_p - f", "λ_max": r"\lambda_{\max}",
    "ρ_max": r"\rho_{\max}", "ρ_min": r"\rho_{\min}", "ρ_t": r"\rho_t", "f_p": r"f_p",
}
_PHRASES = sorted(MATH_PHRASES, key=len, reverse=True)


def _with_math(text: str, plain) -> str:
    """`text` with each MATH_PHRASES name as $math$ and every other character through `plain`."""
    out, i = [], 0
    while i < len(text):
        phrase = next((p for p in _PHRASES if text.startswith(p, i)), None)
        if phrase is not None:
            out.append(f"${MATH_PHRASES[phrase]}$")
            i += len(phrase)
        else:
            out.append(plain(text[i]))
            i += 1
    return "".join(out)


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX tabular, Greek letters, symbols and names like f_p as math."""
    return _with_math(str(text), lambda ch: _LATEX.get(ch, ch))


def math_text(text: str) -> str:
    """A figure label for matplotlib: names like λ_max as mathtext, a literal $ escaped."""
    return _with_math(str(text), lambda ch: r"\$" if ch == "$" else ch)


def cell_latex(cell: Cell | None) -> str:
    main, spread, count = format_cell(cell)
    if main == MISSING:
        return "--"
    out = latex_escape(main)
    if spread:
        out += r" $\pm$ " + latex_escape(spread)
    if count:
        out += f" ({count})"
    if cell is not None and cell.bold:
        out = r"\textbf{" + out + "}"
    if cell is not None and cell.mark:
        out += latex_escape(cell.mark)
    return out


@dataclass
class Table:
    """Rows (labelled by one or more row keys) by named columns of cells, plus notes."""

    name: str  # file stem: comparison, table1, ablation_alpha, ...
    title: str
    row_keys: list[str]
    columns: list[str]
    rows: list[tuple] = field(default_factory=list)
    cells: dict[tuple[tuple, str], Cell] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_row(self, label: tuple) -> None:
        if label not in self.rows:
            self.rows.append(label)

    def set(self, label: tuple, column: str, cell: Cell) -> None:
        self.add_row(label)
        if column not in self.columns:
            self.columns.append(column)
        self.cells[(label, column)] = cell

    def get(self, label: tuple, column: str) -> Cell | None:
        return self.cells.get((label, column))

    @property
    def empty(self) -> bool:
        return not self.rows

    # ------------------------------------------------------------------ renderers
    def to_markdown(self, with_title: bool = True) -> str:
        out = io.StringIO()
        if with_title:
            out.write(f"### {self.title}\n\n")
        header = [*self.row_keys, *self.columns]
        out.write("| " + " | ".join(_md_text(h) for h in header) + " |\n")
        align = ["---"] * len(self.row_keys) + ["---:"] * len(self.columns)
        out.write("| " + " | ".join(align) + " |\n")
        for label in self.rows:
            values = [_md_text(_label_text(v)) for v in label]
            values += [_md_text(cell_markdown(self.get(label, c))) for c in self.columns]
            out.write("| " + " | ".join(values) + " |\n")
        if self.notes:
            out.write("\n")
            for note in self.notes:
                out.write(f"- {note}\n")
        return out.getvalue()

    def to_latex(self) -> str:
        """A booktabs tabular (no float), with the title and notes as comments, shrunk to
        \\linewidth when wider (never enlarged): needs booktabs and graphicx."""
        out = io.StringIO()
        out.write(f"% {self.title}\n")
        spec = "l" * len(self.row_keys) + "r" * len(self.columns)
        out.write(FIT_OPEN)
        out.write(f"\\begin{{tabular}}{{{spec}}}\n\\toprule\n")
        header = [*self.row_keys, *self.columns]
        out.write(" & ".join(latex_escape(h) for h in header) + r" \\" + "\n\\midrule\n")
        for label in self.rows:
            values = [latex_escape(_label_text(v)) for v in label]
            values += [cell_latex(self.get(label, c)) for c in self.columns]
            out.write(" & ".join(values) + r" \\" + "\n")
        out.write("\\bottomrule\n\\end{tabular}%\n}%\n")
        for note in self.notes:
            out.write(f"% {note}\n")
        return out.getvalue()

    def to_csv(self) -> str:
        """Long format: one line a cell with the numbers unformatted."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*self.row_keys, "column", "value", "std", "n", "text", "bold", "mark"])
        for label in self.rows:
            for column in self.columns:
                cell = self.get(label, column)
                if cell is None:
                    continue
                writer.writerow([
                    *[_label_text(v) for v in label], column,
                    "" if cell.value is None or math.isnan(cell.value) else repr(float(cell.value)),
                    "" if cell.std is None or math.isnan(cell.std) else repr(float(cell.std)),
                    "" if cell.n is None else cell.n,
                    cell.text or "", int(cell.bold), cell.mark,
                ])
        return out.getvalue()

    def write(self, out_dir: Path) -> list[Path]:
        """Write <name>.md, .tex and .csv into out_dir, each atomically."""
        written = []
        for suffix, text in (("md", self.to_markdown()), ("tex", self.to_latex()),
                             ("csv", self.to_csv())):
            written.append(write_text(out_dir / f"{self.name}.{suffix}", text))
        return written


def _label_text(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        if math.isnan(value):
            return MISSING
        return f"{value:g}"
    return str(value)


def _md_text(text: str) -> str:
    return str(text).replace("|", "\\|")


def write_text(path: Path, text: str) -> Path:
    """Write a text file atomically (gsam_repro.fsio); returns its path."""
    atomic_write_text(path, text)
    return path
