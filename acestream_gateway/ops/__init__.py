"""What operators see: the status, the listings, the metrics and playlists, all from memory.

Nothing here calls an engine or Docker while answering: the pool, the channel registry and the
fleet already know everything, and engine figures come from one poller's last round. The
assembly is pure (snapshots in, JSON-ready data out), so its rules are tested without a server.
"""
