"""Reading and writing BVH motion capture files (Biovision Hierarchy) for any skeleton.

A BVH file has a HIERARCHY section (joints with an OFFSET from their parent, the CHANNELS animated per
frame in the order listed, and End Sites) and a MOTION section (``Frames:``, ``Frame Time:`` and one
row of channel values per frame). Rotations are in degrees; a joint's local rotation is the product of
its rotation channels in the listed order, e.g. ``Zrotation Yrotation Xrotation`` -> Rz @ Ry @ Rx.

Every problem raises a `DataError` that names the file and line and says what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trajdiff.errors import DataError

__all__ = ["CHANNEL_NAMES", "BvhClip", "Skeleton", "format_bvh", "read_bvh", "write_bvh"]

CHANNEL_NAMES = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")
_TOKEN = re.compile(r"\{|\}|[^\s{}]+")


@dataclass
class Skeleton:
    """Joints in file order (a parent always precedes its children): names, parent index (-1 for the root),
    offsets ``[J, 3]`` from the parent in the file's units, animated channels per joint, and End Sites as
    ``(joint index, offset)`` pairs."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    channels: list[tuple[str, ...]]
    end_sites: list[tuple[int, np.ndarray]] = field(default_factory=list)

    @property
    def joints(self) -> int:
        return len(self.names)

    @property
    def channel_count(self) -> int:
        return sum(len(c) for c in self.channels)

    def channel_slices(self) -> list[slice]:
        """The columns of each joint's channels in a motion row."""
        out, start = [], 0
        for chans in self.channels:
            out.append(slice(start, start + len(chans)))
            start += len(chans)
        return out

    def children(self, joint: int) -> list[int]:
        return [j for j, p in enumerate(self.parents) if p == joint]

    def scaled(self, factor: float) -> Skeleton:
        """The same skeleton with offsets multiplied by ``factor`` (a change of length unit)."""
        return Skeleton(list(self.names), list(self.parents), self.offsets * factor, list(self.channels),
                        [(j, o * factor) for j, o in self.end_sites])

    def difference(self, other: Skeleton, rtol: float = 1e-4) -> str | None:
        """None if both skeletons are the same (names, tree, channels, offsets), else what differs."""
        if self.names != other.names:
            extra = [n for n in other.names if n not in self.names][:3]
            missing = [n for n in self.names if n not in other.names][:3]
            return f"joint names differ ({other.joints} vs {self.joints} joints; new {extra}, missing {missing})"
        if self.parents != other.parents:
            j = next(i for i, (a, b) in enumerate(zip(self.parents, other.parents, strict=True)) if a != b)
            return f"joint {self.names[j]!r} has another parent"
        if self.channels != other.channels:
            j = next(i for i, (a, b) in enumerate(zip(self.channels, other.channels, strict=True)) if a != b)
            return f"joint {self.names[j]!r} has channels {other.channels[j]} instead of {self.channels[j]}"
        scale = max(float(np.abs(self.offsets).max()), 1e-9)
        bad = np.abs(self.offsets - other.offsets).max(axis=1) > rtol * scale
        if bad.any():
            j = int(np.argmax(bad))
            return (f"joint {self.names[j]!r} has offset {np.round(other.offsets[j], 5).tolist()} instead of "
                    f"{np.round(self.offsets[j], 5).tolist()}")
        return None

    def to_state(self) -> dict:
        """JSON-serializable form (see `from_state`)."""
        return {"names": list(self.names), "parents": list(self.parents), "offsets": self.offsets.tolist(),
                "channels": [list(c) for c in self.channels],
                "end_sites": [[j, o.tolist()] for j, o in self.end_sites]}

    @classmethod
    def from_state(cls, state: dict) -> Skeleton:
        return cls(list(state["names"]), [int(p) for p in state["parents"]], np.asarray(state["offsets"], float),
                   [tuple(c) for c in state["channels"]],
                   [(int(j), np.asarray(o, float)) for j, o in state["end_sites"]])


@dataclass
class BvhClip:
    """One BVH file: its skeleton, seconds per frame, and channel values ``[frames, channels]``."""

    skeleton: Skeleton
    frame_time: float
    values: np.ndarray
    source: str = ""

    @property
    def frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time


class _Tokens:
    """Hierarchy tokens with their line numbers, for parsing with precise messages."""

    def __init__(self, lines: list[str], label: str) -> None:
        self.items: list[tuple[str, int]] = []
        self.label = label
        for number, line in enumerate(lines, start=1):
            self.items.extend((tok, number) for tok in _TOKEN.findall(line))
        self.pos = 0

    def error(self, message: str, line: int | None = None) -> DataError:
        if line is None:
            line = self.items[min(self.pos, len(self.items) - 1)][1] if self.items else 1
        return DataError(f"{self.label}, line {line}: {message}")

    def peek(self) -> str | None:
        return self.items[self.pos][0] if self.pos < len(self.items) else None

    def next(self, what: str) -> tuple[str, int]:
        if self.pos >= len(self.items):
            last = self.items[-1][1] if self.items else 1
            raise self.error(f"the hierarchy ends where {what} was expected: a '}}' is missing (unbalanced braces) "
                             "or the file is truncated", last)
        item = self.items[self.pos]
        self.pos += 1
        return item

    def expect(self, word: str) -> int:
        tok, line = self.next(repr(word))
        if tok.upper() != word.upper():
            hint = " (unbalanced braces?)" if word in "{}" or tok in "{}" else ""
            raise self.error(f"expected {word!r} but found {tok!r}{hint}", line)
        return line

    def number(self, what: str) -> float:
        tok, line = self.next(what)
        try:
            return float(tok)
        except ValueError:
            raise self.error(f"{what} must be a number, found {tok!r}", line) from None


def _parse_joint(tok: _Tokens, name: str, parent: int, skel: dict) -> None:
    index = len(skel["names"])
    skel["names"].append(name)
    skel["parents"].append(parent)
    tok.expect("{")
    offset, channels = None, ()
    while True:
        word, line = tok.next(f"OFFSET, CHANNELS, JOINT, End Site or '}}' in joint {name!r}")
        upper = word.upper()
        if upper == "OFFSET":
            offset = [tok.number(f"OFFSET of joint {name!r}") for _ in range(3)]
        elif upper == "CHANNELS":
            count_tok, cline = tok.next("the channel count")
            if not count_tok.isdigit():
                raise tok.error(f"CHANNELS of joint {name!r} must start with a count, found {count_tok!r}", cline)
            names = []
            for _ in range(int(count_tok)):
                ch, chl = tok.next(f"a channel name of joint {name!r}")
                if ch not in CHANNEL_NAMES:
                    raise tok.error(f"unknown channel {ch!r} for joint {name!r} (CHANNELS says {count_tok}); "
                                    f"valid channels: {', '.join(CHANNEL_NAMES)}", chl)
                names.append(ch)
            channels = tuple(names)
        elif upper == "JOINT":
            child, _ = tok.next("a joint name")
            if offset is None:
                raise tok.error(f"joint {name!r} has no OFFSET before its children", line)
            if len(skel["offsets"]) == index:
                skel["offsets"].append(offset)
                skel["channels"].append(channels)
            _parse_joint(tok, child, index, skel)
        elif upper == "END":
            tok.expect("Site")
            tok.expect("{")
            tok.expect("OFFSET")
            end = [tok.number(f"End Site OFFSET of joint {name!r}") for _ in range(3)]
            tok.expect("}")
            skel["end_sites"].append((index, np.asarray(end, float)))
        elif word == "}":
            break
        elif upper in ("ROOT", "MOTION", "HIERARCHY"):
            raise tok.error(f"found {word!r} inside joint {name!r}: a '}}' is missing (unbalanced braces)", line)
        else:
            raise tok.error(f"unexpected {word!r} in joint {name!r}; expected OFFSET, CHANNELS, JOINT, End Site "
                            "or '}'", line)
    if offset is None:
        raise tok.error(f"joint {name!r} has no OFFSET")
    if len(skel["offsets"]) == index:
        skel["offsets"].append(offset)
        skel["channels"].append(channels)


def read_bvh(path: str | Path) -> BvhClip:
    """Parses a BVH file. Raises `DataError` naming the file and line for malformed input: unbalanced
    braces, unknown channels, rows with the wrong number of values, non-numeric values, a frame time
    that is not positive, or a frame count that does not match the rows."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such BVH file; check the path")
    label = str(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"{label}: cannot read it ({exc})") from None
    motion_at = next((i for i, line in enumerate(lines) if line.strip().upper().startswith("MOTION")), None)
    if motion_at is None:
        raise DataError(f"{label}: no MOTION section; a BVH file needs HIERARCHY, then MOTION with Frames, "
                        "Frame Time and one row per frame")
    tok = _Tokens(lines[:motion_at], label)
    tok.expect("HIERARCHY")
    tok.expect("ROOT")
    root, _ = tok.next("the root joint name")
    skel: dict = {"names": [], "parents": [], "offsets": [], "channels": [], "end_sites": []}
    _parse_joint(tok, root, -1, skel)
    if tok.peek() is not None:
        word, line = tok.next("")
        extra = "an extra '}' (unbalanced braces)" if word == "}" else repr(word)
        raise tok.error(f"found {extra} after the root joint closed; only one ROOT per file is supported", line)
    skeleton = Skeleton(skel["names"], skel["parents"], np.asarray(skel["offsets"], float), skel["channels"],
                        skel["end_sites"])
    frames, frame_time, first_row = _motion_header(lines, motion_at, label)
    values = _motion_rows(lines, first_row, frames, skeleton.channel_count, label)
    return BvhClip(skeleton, frame_time, values, label)


def _motion_header(lines: list[str], motion_at: int, label: str) -> tuple[int, float, int]:
    i = motion_at + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or not lines[i].strip().lower().startswith("frames:"):
        raise DataError(f"{label}, line {i + 1}: expected 'Frames: N' after MOTION")
    try:
        frames = int(lines[i].split(":", 1)[1])
    except ValueError:
        raise DataError(f"{label}, line {i + 1}: the frame count must be an integer: {lines[i].strip()!r}") from None
    i += 1
    if i >= len(lines) or not lines[i].strip().lower().startswith("frame time:"):
        raise DataError(f"{label}, line {i + 1}: expected 'Frame Time: SECONDS' after the frame count")
    try:
        frame_time = float(lines[i].split(":", 1)[1])
    except ValueError:
        raise DataError(f"{label}, line {i + 1}: the frame time must be a number: {lines[i].strip()!r}") from None
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise DataError(f"{label}, line {i + 1}: the frame time is {frame_time}; it must be a positive number of "
                        "seconds per frame (e.g. 0.0083333 for 120 fps)")
    if frames < 1:
        raise DataError(f"{label}, line {i}: the file declares {frames} frames; it needs at least one")
    return frames, frame_time, i + 1


def _motion_rows(lines: list[str], first: int, frames: int, channels: int, label: str) -> np.ndarray:
    rows = [(n, line) for n, line in enumerate(lines[first:], start=first + 1) if line.strip()]
    if len(rows) != frames:
        raise DataError(f"{label}: 'Frames:' says {frames} but the file has {len(rows)} motion rows "
                        f"(lines {first + 1}-{len(lines)}); fix the count or the rows")
    tokens: list[str] = []
    for number, line in rows:
        parts = line.split()
        if len(parts) != channels:
            raise DataError(f"{label}, line {number}: {len(parts)} values but the hierarchy has {channels} channels; "
                            "every motion row needs one value per channel")
        tokens.extend(parts)
    try:
        values = np.asarray(tokens, dtype=float)
    except ValueError:
        for number, line in rows:
            for column, part in enumerate(line.split(), start=1):
                try:
                    float(part)
                except ValueError:
                    raise DataError(f"{label}, line {number}, value {column}: {part!r} is not a number") from None
        raise
    values = values.reshape(frames, channels)
    if not np.isfinite(values).all():
        row, column = np.argwhere(~np.isfinite(values))[0]
        raise DataError(f"{label}, line {rows[row][0]}, value {column + 1}: {values[row, column]} is not finite")
    return values


def format_bvh(skeleton: Skeleton, values: np.ndarray, frame_time: float, precision: int = 6) -> str:
    """The text of a BVH file (tab-indented hierarchy as MotionBuilder and Blender write it)."""
    values = np.asarray(values, float)
    if values.ndim != 2 or values.shape[1] != skeleton.channel_count:
        raise DataError(f"motion values must be [frames, {skeleton.channel_count}], got {values.shape}")
    if frame_time <= 0:
        raise DataError(f"frame time must be positive, got {frame_time}")
    out = ["HIERARCHY"]
    ends: dict[int, list[np.ndarray]] = {}
    for j, offset in skeleton.end_sites:
        ends.setdefault(j, []).append(offset)

    def fmt(v: np.ndarray) -> str:
        return " ".join(f"{x:.{precision}f}" for x in v)

    def emit(j: int, depth: int) -> None:
        pad = "\t" * depth
        out.append(f"{pad}{'ROOT' if skeleton.parents[j] < 0 else 'JOINT'} {skeleton.names[j]}")
        out.append(pad + "{")
        out.append(f"{pad}\tOFFSET {fmt(skeleton.offsets[j])}")
        if skeleton.channels[j]:
            out.append(f"{pad}\tCHANNELS {len(skeleton.channels[j])} {' '.join(skeleton.channels[j])}")
        for child in skeleton.children(j):
            emit(child, depth + 1)
        for end in ends.get(j, []):
            out.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET {fmt(end)}", f"{pad}\t}}"])
        out.append(pad + "}")

    emit(0, 0)
    out += ["MOTION", f"Frames: {len(values)}", f"Frame Time: {frame_time:.7f}"]
    out.extend(fmt(row) for row in values)
    return "\n".join(out) + "\n"


def write_bvh(path: str | Path, skeleton: Skeleton, values: np.ndarray, frame_time: float) -> Path:
    """Writes a BVH file (channel values ``[frames, channels]`` in the skeleton's units and degrees)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_bvh(skeleton, values, frame_time), encoding="utf-8")
    return path
