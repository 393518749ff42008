"""Which Docker endpoints failed the fleet loop's pass, and what the loop says and reports of it.

With one endpoint, its Docker failing fails the pass: the loop backs off, logs the failure once
(``fleet_unavailable``, then at debug level until it recovers) and, when Docker cannot be reached,
has the endpoint block provisioning. With several, an endpoint whose Docker fails sits out the
rest of the pass (blocked when unreachable, so new engines go to the others) and the pass goes on;
the pass fails only when every endpoint failed. A pass that succeeds tells the endpoints that took
part that their Docker answered.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..logs import get_logger
from .docker import FleetError
from .docker_backend import DockerBackend

log = get_logger(__name__)


class PassFailures:
    """The endpoints that failed the current pass, and the loop's last error; see the module
    docstring."""

    def __init__(self, backends: Mapping[str, DockerBackend], *, retry_s: float) -> None:
        """``retry_s``: when an endpoint that sat out a pass is tried again (the next pass)."""
        self._backends = backends
        self._retry_s = retry_s
        self._down: dict[str, FleetError] = {}  # endpoints whose Docker failed the latest pass
        self.last_error: str | None = None

    def begin(self) -> None:
        """A pass begins: every endpoint takes part."""
        self._down = {}

    def sits_out(self, name: str) -> bool:
        """Whether the endpoint's Docker failed this pass (it takes no further part in it)."""
        return name in self._down

    def endpoint_failed(self, backend: DockerBackend, exc: FleetError) -> None:
        """One endpoint's Docker failed during a pass: with one endpoint the pass fails (raises
        ``exc``; the loop backs off); with several, that endpoint sits out the pass."""
        if len(self._backends) == 1:
            raise exc
        self._down[backend.name] = exc
        if exc.unreachable:
            backend.docker_reachable(False, exc.message, self._retry_s)
        else:
            log.warning("fleet_endpoint_pass_failed", endpoint=backend.name, reason=exc.message)

    def endpoint_synced(self, backend: DockerBackend) -> None:
        """One endpoint's Docker answered the pass's listing (one endpoint: the loop tells)."""
        if len(self._backends) > 1:
            backend.docker_reachable(True)

    def raise_if_all_down(self) -> None:
        """Raise the first endpoint's error when every endpoint failed the pass."""
        if len(self._down) == len(self._backends):
            raise next(iter(self._down.values()))

    def loop_failed(self, exc: FleetError, retry_in_s: float, *, first: bool) -> None:
        """The pass failed on Docker: logged once until it recovers; when Docker cannot be
        reached, every endpoint that took part in the pass blocks provisioning."""
        self.last_error = exc.message
        if first:
            log.warning("fleet_unavailable", reason=exc.message, retry_in_s=retry_in_s)
        else:
            log.debug("fleet_still_unavailable", reason=exc.message, retry_in_s=retry_in_s)
        if exc.unreachable:
            for backend in self._taking_part():
                backend.docker_reachable(False, exc.message, retry_in_s)

    def loop_crashed(self, exc: Exception) -> None:
        """The pass failed on a bug (logged by the loop's guard)."""
        self.last_error = repr(exc)

    def loop_succeeded(self, *, recovered: bool) -> None:
        """The pass succeeded: the endpoints that took part answered; ``recovered`` after a
        failed pass."""
        for backend in self._taking_part():
            backend.docker_reachable(True)
        if recovered:
            log.info("fleet_recovered")
        self.last_error = None

    def _taking_part(self) -> list[DockerBackend]:
        return [b for b in self._backends.values() if b.name not in self._down]
