#!/usr/bin/env bash
# The contract of ghcr.io/martinbjeldbak/acestream-http-proxy's entrypoint: fixed engine options,
# --bind-all only when ALLOW_REMOTE_ACCESS=yes, then EXTRA_FLAGS and the container command.
# HTTP_PORT is not read: the HTTP port comes only from the command (--http-port N).
# shellcheck disable=SC2086  # EXTRA_FLAGS is split into words on purpose, as the image does
if [[ "${ALLOW_REMOTE_ACCESS:-}" == "yes" ]]; then
    EXTRA_FLAGS="${EXTRA_FLAGS:-} --bind-all"
fi
exec /app/start-engine --live-cache-type memory --client-console ${EXTRA_FLAGS:-} "$@"
