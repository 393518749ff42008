"""One upstream, many players: the channel registry, the fan-out buffer and the upstream reader."""
