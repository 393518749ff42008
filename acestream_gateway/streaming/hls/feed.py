"""A channel's HLS output: its segmenter fed from the broadcast, its window and its viewers.

It is one consumer of the channel's broadcast at the live edge (a tap that sees every published
block and the engine session it came from), made on the first HLS request of the channel; every
HLS player of the channel reads the same window.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ...logs import get_logger
from ..broadcast import Broadcast
from ..mpegts import NULL_PACKET
from .segmenter import Segmenter
from .viewers import Viewers
from .window import Window

log = get_logger(__name__)

_SEEDED_FIRST_S = 1.0  # the shortest first segment of a channel that already plays


@dataclass(frozen=True, slots=True)
class HlsPolicy:
    """How segments are cut and kept, and how long an HLS player holds a channel."""

    window: int = 6
    segment_s: float = 4.0
    idle_s: float = 30.0


class HlsFeed:
    """One channel's segments, shared by all its HLS players."""

    def __init__(self, broadcast: Broadcast, policy: HlsPolicy) -> None:
        # Numbered from the wall clock's seconds (a segment lasts longer than a second), so a
        # channel opened again, even by a restarted gateway, never reuses a sequence number.
        self.window = Window(policy.window, first_sequence=int(time.time()))
        self.viewers = Viewers(policy.idle_s)
        self._policy = policy
        self._broadcast = broadcast
        self._first = asyncio.Event()
        self._failed = False
        self._stopped = False
        self.created_at = time.monotonic()
        session, held = broadcast.since_join()
        # A channel that already plays is cut from its latest keyframe still held, and its
        # first segment ends at the next keyframe a second or more on: its first HLS player
        # waits for at most a keyframe interval, not a whole segment of live stream.
        seeded = session is not None and bool(held)
        first_s = min(policy.segment_s, _SEEDED_FIRST_S) if seeded else policy.segment_s
        self._segmenter = Segmenter(policy.segment_s, first_segment_s=first_s)
        for chunk in held if seeded else ():
            self._take(chunk, None if chunk == NULL_PACKET else session)
        broadcast.tap(self._take)

    @property
    def dormant(self) -> bool:
        """No HLS player fetched within the idle window: nothing is cut or kept any more (TS
        players may still watch the channel); the next HLS request makes a new feed."""
        return self._stopped or self.viewers.until < time.monotonic()

    def close(self) -> None:
        """Stop being fed (the registry replaces a dormant feed)."""
        self._broadcast.untap(self._take)
        self._release()

    def _release(self) -> None:
        self._stopped = True
        self.window = Window(self._policy.window, first_sequence=self.window.next_sequence)
        self._segmenter = Segmenter(self._policy.segment_s)

    def _take(self, block: bytes, session: object) -> None:
        if session is None or self._failed or self._stopped:
            return  # keep-alive packets are not media
        if self.dormant:
            self._release()  # its memory goes now; the tap itself is removed by the registry
            return
        try:
            cuts = self._segmenter.feed(block, session)
        except Exception:  # a cutting bug must not reach the players' fan-out
            log.exception("hls_segmenter_failed")
            self._failed = True
            return
        for cut in cuts:
            self.window.add(cut)
            self._first.set()

    @property
    def ready(self) -> bool:
        return self._first.is_set()

    async def wait_ready(self) -> bool:
        """Return once the first segment is complete (True), or the channel ended (False)."""
        while not self._first.is_set():
            if self._broadcast.closed or self._failed:
                return False
            waiter = asyncio.ensure_future(self._first.wait())
            try:
                await asyncio.wait([waiter], timeout=0.5)
            finally:
                waiter.cancel()
        return True
