"""A vessel log (tracktable ``.traj``) of any number of AIS reports, for the memory benchmark.

The shared NY Harbor week (``../shared/data/ais/NYHarbor_2020_12_first_week.traj``: 513 trajectories,
140 vessels, 172,679 reports) is written again and again: copy ``k`` shifts every MMSI by ``k * 10**9`` (so
each copy's vessels are new vessels) and every time stamp by ``k`` weeks (so the copies follow each other
in time), until the file holds ``rows`` reports; the last trajectory is cut (its header's point count with
it) so that the count is exact. The tracks stay real ones: the loader cleans, splits and resamples them as
it would the original.

    python benchmarks/make_vessel_log.py --rows 2000000 --out /tmp/vessels-2M.traj
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ais" / "NYHarbor_2020_12_first_week.traj"
MMSI_SHIFT = 10**9
WEEK = np.timedelta64(7, "D")


def _parse(source: Path) -> list[tuple[list[str], np.ndarray, np.ndarray, list[str]]]:
    """Per trajectory: its header fields (up to and with the point layout), MMSIs (int64), stamps
    (datetime64[s]) and the rest of each point (lon, lat and any properties) as text."""
    out = []
    for text in source.read_text(encoding="utf-8").splitlines():
        if not text.strip():
            continue
        fields = text.split(",")
        p = fields.index("*P*")
        dimension, has_id, has_time, n_props = (int(v) for v in fields[p + 2:p + 6])
        if not (has_id and has_time):
            raise SystemExit(f"{source}: expected points with ids and time stamps")
        per = has_id + has_time + dimension + n_props
        body = fields[p + 6:]
        points = [body[k:k + per] for k in range(0, len(body), per)]
        mmsi = np.asarray([int(point[0]) for point in points], dtype=np.int64)
        stamps = np.asarray([point[1].replace(" ", "T") for point in points], dtype="datetime64[s]")
        rest = [",".join(point[2:]) for point in points]
        out.append((fields[:p + 6], mmsi, stamps, rest))
    return out


def make_log(out: str | Path, rows: int, source: Path = SOURCE) -> dict[str, int]:
    """Writes ``rows`` reports to ``out`` (see the module docstring); returns the copies and trajectories."""
    tracks = _parse(source)
    written = copies = lines = 0
    with open(out, "w", encoding="utf-8") as handle:
        while written < rows:
            for header, mmsi, stamps, rest in tracks:
                take = min(len(rest), rows - written)
                if take <= 0:
                    break
                shifted_ids = (mmsi[:take] + copies * MMSI_SHIFT).astype(str)
                shifted_times = np.char.replace(np.datetime_as_string(stamps[:take] + copies * WEEK, unit="s"),
                                                "T", " ")
                head = [header[0], f"{header[1]}-{copies}", header[2], str(take), *header[4:]]
                points = ",".join(f"{i},{t},{r}" for i, t, r in zip(shifted_ids, shifted_times, rest[:take],
                                                                    strict=True))
                handle.write(",".join(head) + "," + points + "\n")
                written += take
                lines += 1
            copies += 1
    return {"rows": written, "copies": copies, "trajectories": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True, help="AIS reports to write")
    parser.add_argument("--out", type=Path, required=True, help="the .traj file to write")
    args = parser.parse_args()
    print(make_log(args.out, args.rows))


if __name__ == "__main__":
    main()
