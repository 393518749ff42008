#!/usr/bin/env bash
# The contract of ghcr.io/krinkuto11/acestream-http-proxy's entrypoint: the engine's settings are
# written to a file from HTTP_PORT, HTTPS_PORT and BIND_ALL (any non-empty value), and the engine
# reads them from it (@file). The container command ("$@") is never used.
conf=/app/acestream.conf
lines=""
if [[ -n "${HTTP_PORT:-}" ]]; then
    lines+="--http-port=${HTTP_PORT}\n"
fi
if [[ -n "${HTTPS_PORT:-}" ]]; then
    lines+="--https-port=${HTTPS_PORT}\n"
fi
if [[ -n "${BIND_ALL:-}" ]]; then
    lines+="--bind-all\n"
fi
printf "%b" "$lines" >"$conf"
exec /app/start-engine --client-console "@$conf"
