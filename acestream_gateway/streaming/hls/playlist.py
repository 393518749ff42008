"""Rendering a live media playlist (RFC 8216, version 3): a pure function of a listing."""

from __future__ import annotations

from collections.abc import Callable

from .window import Listing


def render(listing: Listing, uri: Callable[[int], str]) -> str:
    """The playlist text; ``uri`` gives a segment's (relative) URL from its sequence number."""
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{listing.target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{listing.media_sequence}",
    ]
    if listing.discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{listing.discontinuity_sequence}")
    for segment in listing.segments:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXTINF:{segment.duration_s:.3f},")
        lines.append(uri(segment.sequence))
    return "\n".join(lines) + "\n"
