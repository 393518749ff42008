#!/usr/bin/env python3
"""The container's health check: ``GET /health`` where the gateway listens, exit 0 when it answers
200. The image has Python and no curl, so this uses the standard library only. It reads the same
``GATEWAY_HOST`` / ``GATEWAY_PORT`` as the gateway (the check runs with the container's
environment); a gateway listening on every address is asked on loopback."""

from __future__ import annotations

import http.client
import os
import sys

_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}
_TIMEOUT_S = 3.0


def target() -> tuple[str, int]:
    host = os.environ.get("GATEWAY_HOST", "0.0.0.0").strip()
    host = _LOOPBACK.get(host, host).strip("[]")
    return host, int(os.environ.get("GATEWAY_PORT", "8000"))


def main() -> int:
    host, port = target()
    url = f"http://{host}:{port}/health"
    conn = http.client.HTTPConnection(host, port, timeout=_TIMEOUT_S)
    try:
        conn.request("GET", "/health")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        print(f"gateway-healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if status != 200:
        print(f"gateway-healthcheck: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
