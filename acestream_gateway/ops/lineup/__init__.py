"""Channels, not content ids: a channel list (M3U) read into numbered channels with several
sources each, the per-source state the playing side drives, and the guide limited to them.

``m3u`` parses, ``numbering`` groups and numbers (pure), ``sources`` keeps per-source state,
``fetch`` reads files and URLs within bounds, ``epg`` filters an XMLTV guide, and ``service``
owns the refresh loop and the last good copies.
"""
