"""Reading track files (ETH/UCY text, CSV, Parquet, a DataFrame) into a table of ``frame, agent, x, y`` rows.

Why: fixed-format text has no names to check, so every departure from it is counted where it is found: a row
that cannot be read (too few fields, text or infinities) is skipped, a row with more fields than the format
(or the header) has keeps its first ones, and columns a header names beyond frame, agent, x and y are ignored;
each is counted in the `FileReport` with its line numbers and announced in the file's warning. A file whose
every row has extra fields and no header naming them is refused: its layout is not the one assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.errors import ConfigError, DataError

__all__ = ["COLUMN_ALIASES", "SHOW", "TRACK_SUFFIXES", "FileReport", "read_source", "sources"]

TRACK_SUFFIXES = (".txt", ".csv", ".tsv", ".parquet", ".pq")
COLUMN_ALIASES = {
    "frame": ("frame", "frame_id", "t", "time", "timestep"),
    "agent": ("agent_id", "agent", "ped_id", "pedestrian", "id", "track_id", "node_id"),
    "x": ("x", "pos_x"),
    "y": ("y", "pos_y"),
}
SHOW = 5  # line numbers listed per problem in reports and messages


@dataclass
class FileReport:
    """What loading one file found and repaired; stored (as a dict) in each of its episodes' meta.

    Every data row is accounted for: ``rows == rows_kept + malformed_rows + duplicate_rows + off_grid_rows +
    single_row_tracks``; ``extra_field_rows`` are kept (their first fields read) and counted. In text files, every
    line that is not blank is a row, the header (``header_line``, 0 for none) or a comment (``#``)."""

    file: str
    rows: int = 0
    header_line: int = 0
    comment_lines: int = 0
    rows_kept: int = 0
    malformed_rows: int = 0
    malformed_lines: list[int] = field(default_factory=list)
    extra_field_rows: int = 0
    extra_field_lines: list[int] = field(default_factory=list)
    fields: int = 4
    columns_ignored: list[str] = field(default_factory=list)
    duplicate_rows: int = 0
    duplicate_lines: list[int] = field(default_factory=list)
    off_grid_rows: int = 0
    off_grid_lines: list[int] = field(default_factory=list)
    frame_step: float = 0.0
    gaps_split: int = 0
    single_row_tracks: int = 0
    single_row_agents: list[str] = field(default_factory=list)
    tracks: int = 0
    agents: int = 0
    frames: list[float] = field(default_factory=list)  # first and last frame kept
    bounds: list[float] = field(default_factory=list)  # x min, x max, y min, y max of the rows kept

    def problems(self) -> list[str]:
        """One phrase per kind of problem found (empty when the file was clean)."""
        out = []
        if self.malformed_rows:
            out.append(f"{self.malformed_rows} malformed row(s) skipped (lines {_lines(self.malformed_lines)})")
        if self.extra_field_rows:
            out.append(f"{self.extra_field_rows} row(s) with more than {self.fields} fields read without the extra "
                       f"ones (lines {_lines(self.extra_field_lines)})")
        if self.columns_ignored:
            out.append(f"column(s) ignored: {self.columns_ignored}")
        if self.duplicate_rows:
            out.append(f"{self.duplicate_rows} duplicate (frame, agent) row(s) removed, first kept "
                       f"(lines {_lines(self.duplicate_lines)})")
        if self.off_grid_rows:
            out.append(f"{self.off_grid_rows} row(s) off the frame grid of step {self.frame_step:g} skipped "
                       f"(lines {_lines(self.off_grid_lines)})")
        if self.gaps_split:
            out.append(f"{self.gaps_split} gap(s) inside tracks: tracks split there")
        if self.single_row_tracks:
            more = " ..." if self.single_row_tracks > SHOW else ""
            out.append(f"{self.single_row_tracks} track(s) with a single row skipped "
                       f"(agents {', '.join(self.single_row_agents[:SHOW])}{more})")
        return out

    def summary(self, label: str) -> str:
        """What was read, in one line: rows, agents and tracks, the frames and the box the positions span (a
        mistake no check can see, such as x and y swapped, shows here)."""
        line = (f"{label}: read {self.rows} row(s): {self.agents} agent(s) in {self.tracks} track(s) of "
                f"{self.rows_kept} row(s)")
        if self.frames and self.bounds:
            x0, x1, y0, y1 = self.bounds
            line += (f", frames {self.frames[0]:g} to {self.frames[1]:g} (step {self.frame_step:g}), "
                     f"x {x0:.4g} to {x1:.4g}, y {y0:.4g} to {y1:.4g}")
        return line

    def as_dict(self) -> dict[str, Any]:
        return {key: (list(value) if isinstance(value, list) else value) for key, value in self.__dict__.items()}


def _lines(lines: list[int]) -> str:
    return ", ".join(str(n) for n in lines[:SHOW]) + (" ..." if len(lines) > SHOW else "")


def sources(source: Any) -> list[Any]:
    """The files (or the one DataFrame) that ``source`` names: a file, a folder of track files or a list."""
    if isinstance(source, pd.DataFrame):
        return [source]
    if isinstance(source, (list, tuple)):
        if not source:
            raise ConfigError("got an empty list of track files; pass at least one file")
        return [Path(s) for s in source]
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TRACK_SUFFIXES)
        if not files:
            raise DataError(f"{path} holds no track files ({', '.join(TRACK_SUFFIXES)}); point --data at a file "
                            "or a folder of files with columns frame, agent_id, x, y")
        return files
    if not path.exists():
        raise DataError(f"{path} does not exist; give a track file or a folder of them")
    return [path]


def read_source(source: Path | pd.DataFrame) -> tuple[str, str, pd.DataFrame, FileReport]:
    """(label, stem, table with float columns frame, agent, x, y and int column line, report)."""
    if isinstance(source, pd.DataFrame):
        report = FileReport("DataFrame")
        return "DataFrame", "data", _from_frame(source, "DataFrame", report, first_line=2), report
    report = FileReport(str(source))
    suffix = source.suffix.lower()
    if suffix not in TRACK_SUFFIXES:
        raise DataError(f"{source}: unsupported file type {source.suffix!r}; use one of {', '.join(TRACK_SUFFIXES)}")
    if suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(source)
        except Exception as error:  # noqa: BLE001 - pyarrow raises many types for a broken file
            raise DataError(f"{source}: cannot read as Parquet ({error}); check the file") from error
        return str(source), source.stem, _from_frame(frame, str(source), report, first_line=1), report
    return str(source), source.stem, _from_text(source, report), report


def _column_map(names: list[str], label: str, where: str) -> list[int]:
    lowered = [str(n).strip().lower() for n in names]
    picked = []
    for role, aliases in COLUMN_ALIASES.items():
        hit = next((lowered.index(a) for a in aliases if a in lowered), None)
        if hit is None:
            raise DataError(f"{label}: {where} has no {role!r} column (found {names}); tracks need columns frame, "
                            f"agent_id, x, y (accepted names for {role!r}: {', '.join(aliases)})")
        picked.append(hit)
    return picked


def _from_frame(frame: pd.DataFrame, label: str, report: FileReport, first_line: int) -> pd.DataFrame:
    names = [str(c) for c in frame.columns]
    cols = _column_map(names, label, "the table")
    report.columns_ignored = [name for i, name in enumerate(names) if i not in cols]
    picked = frame.iloc[:, cols].copy()
    picked.columns = ["frame", "agent", "x", "y"]
    numeric = picked.apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(numeric.to_numpy(dtype=float)).all(axis=1)
    lines = np.arange(len(frame)) + first_line
    report.rows = len(frame)
    report.malformed_rows = int(bad.sum())
    report.malformed_lines = lines[bad].tolist()[:SHOW]
    out = numeric[~bad].astype(float)
    out["line"] = lines[~bad]
    return out.reset_index(drop=True)


def _numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _from_text(path: Path, report: FileReport) -> pd.DataFrame:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error})") from error
    sep = "," if path.suffix.lower() == ".csv" else None
    order = [0, 1, 2, 3]
    rows, where = [], []
    header: int | None = None  # the header's line, if the file has one
    first: tuple[int, int] | None = None  # (line, fields) of the first data row
    extra_kept = 0
    for number, line in enumerate(text.split("\n"), start=1):  # line ends as an editor counts them
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            report.comment_lines += 1
            continue
        fields = [f.strip() for f in (line.split(sep) if sep else line.split())]
        if header is None and first is None and not _numeric(fields[0]):
            try:
                order = _column_map(fields, str(path), f"the header on line {number}")
            except DataError:
                if not any(_numeric(f) for f in fields):
                    raise  # a header without the columns tracks need
            else:  # (a data row whose first field is garbled is counted as malformed below)
                header = report.header_line = number
                report.fields = len(fields)
                report.columns_ignored = [name for i, name in enumerate(fields) if i not in order]
                continue
        first = first or (number, len(fields))
        report.rows += 1
        try:
            values = [float(fields[i]) for i in order]
        except (ValueError, IndexError):
            values = None
        if values is None or not np.all(np.isfinite(values)) or len(fields) < report.fields:
            report.malformed_rows += 1
            if len(report.malformed_lines) < SHOW:
                report.malformed_lines.append(number)
            continue
        if len(fields) > report.fields:
            report.extra_field_rows += 1
            extra_kept += 1
            if len(report.extra_field_lines) < SHOW:
                report.extra_field_lines.append(number)
        rows.append(values)
        where.append(number)
    if not rows:
        if first is not None and first[1] < 4 and header is None:
            raise DataError(f"{path}: line {first[0]} has {first[1]} column(s), expected 4 (frame, agent_id, x, y); "
                            f"missing columns: {', '.join(['frame', 'agent_id', 'x', 'y'][first[1]:])}. Fix the file "
                            "or add a header")
        raise DataError(f"{path}: no readable row of 4 numbers (frame, agent_id, x, y)"
                        + (f"; {report.malformed_rows} malformed row(s), e.g. line {report.malformed_lines[0]}"
                           if report.malformed_rows else "; the file is empty"))
    if header is None and extra_kept == len(rows):
        raise DataError(f"{path}: every row has more than 4 fields (line {first[0]}: {first[1]}) and no header names "  # type: ignore[index]
                        "them, so which are frame, agent_id, x and y is unknown; add a header line naming the columns "
                        "(e.g. frame agent_id x y ...; others are then ignored), or remove the extra fields")
    table = pd.DataFrame(np.asarray(rows, dtype=float), columns=["frame", "agent", "x", "y"])
    table["line"] = np.asarray(where, dtype=np.int64)
    return table
