"""Read TensorBoard scalars back from event files, as TensorBoard itself shows them.

An event file is a sequence of records (length: u64, its CRC: u32, an ``Event`` protobuf, the
data's CRC: u32). Files are read in name order; a ``SessionLog.START`` event at step T (what a
resumed run writes first, ``purge_step``) hides every earlier event at step ≥ T.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tensorboardX.proto.event_pb2 import Event, SessionLog


def _records(path: Path):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        offset += 12  # length and its CRC
        yield data[offset : offset + length]
        offset += length + 4  # payload and its CRC


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` in step order, after TensorBoard's purge rule."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        for record in _records(path):
            event = Event.FromString(record)
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                for tag, points in scalars.items():
                    scalars[tag] = [p for p in points if p[0] < event.step]
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return {tag: sorted(points) for tag, points in scalars.items()}
