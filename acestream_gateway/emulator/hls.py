"""The HLS output of a session (``/ace/manifest.m3u8``): a live playlist of short TS segments.

Segments are cut from the session's endless TS source as wall time passes, one per keyframe
interval, and only the last few are kept, like the engine's sliding live window. When nobody asked
for a while, the window jumps ahead instead of producing every segment it missed.
"""

from __future__ import annotations

from collections import deque

from .mpegts import TS_PACKET_SIZE, TsStream

INITIAL_SEGMENTS = 3
KEPT_SEGMENTS = 6


class HlsWindow:
    """Segments numbered from 0; `refresh` cuts the ones that wall time has made available."""

    def __init__(self, source: TsStream, segment_s: float, started_at: float) -> None:
        self._source = source
        self._packets = max(1, round(segment_s * source.bitrate_bps / (TS_PACKET_SIZE * 8)))
        self.duration_s = self._packets * TS_PACKET_SIZE * 8 / source.bitrate_bps
        self._started_at = started_at
        self._next_seq = 0
        self._segments: deque[tuple[int, bytes]] = deque(maxlen=KEPT_SEGMENTS)

    def refresh(self, now: float) -> None:
        due = INITIAL_SEGMENTS + int((now - self._started_at) / self.duration_s)
        self._next_seq = max(self._next_seq, due - KEPT_SEGMENTS)
        while self._next_seq < due:
            self._segments.append((self._next_seq, self._source.read(self._packets)))
            self._next_seq += 1

    def segment(self, seq: int) -> bytes | None:
        return next((data for number, data in self._segments if number == seq), None)

    def playlist(self, segment_url: str) -> str:
        """The m3u8 text; `segment_url` has a ``{seq}`` placeholder."""
        first = self._segments[0][0] if self._segments else self._next_seq
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{max(1, round(self.duration_s))}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
        ]
        for seq, _ in self._segments:
            lines += [f"#EXTINF:{self.duration_s:.3f},", segment_url.format(seq=seq)]
        return "\n".join(lines) + "\n"
