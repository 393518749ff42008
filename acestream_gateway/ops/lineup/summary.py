"""What ``check-config`` says of the channel list: read once, within the same bounds as the
gateway's own loads, and summed up (channels, sources, what was skipped and why)."""

from __future__ import annotations

import aiohttp

from .fetch import FetchError, read_all
from .m3u import PlaylistError, parse
from .numbering import build_lineup
from .service import PLAYLIST_MAX_BYTES

_SHOWN = 20  # skipped entries listed; the count says how many there are


async def summarize(location: str, *, timeout_s: float, guide: str | None) -> dict[str, object]:
    """The channel list at ``location`` in a few lines, or the reason it cannot be read."""
    try:
        async with aiohttp.ClientSession() as http:
            data = await read_all(
                location, http=http, max_bytes=PLAYLIST_MAX_BYTES, timeout_s=timeout_s
            )
        lineup = build_lineup(parse(data))
    except (FetchError, PlaylistError) as exc:
        return {"location": location, "error": str(exc)}
    return {
        "location": location,
        "channels": len(lineup.channels),
        "sources": sum(len(channel.sources) for channel in lineup.channels),
        "numbers": [channel.number for channel in lineup.channels][:_SHOWN],
        "skipped": len(lineup.skipped),
        "skipped_first": [f"line {s.line}: {s.reason}" for s in lineup.skipped[:_SHOWN]],
        "number_clashes": [
            f"tvg-chno {c.chno} kept by {c.winner}; {c.loser} got {c.given}" for c in lineup.clashes
        ],
        "guide": guide or lineup.guide_url,
    }
