"""Host ports for engines: each engine holds exactly one, reserved once and freed once (rule 4)."""

from __future__ import annotations

from collections.abc import Iterable


class PortsExhausted(Exception):
    """Every port of the range is held."""


class PortAllocator:
    """The ports of one Docker endpoint's range, and who holds them."""

    def __init__(self, lo: int, hi: int) -> None:
        if not 0 < lo <= hi < 65536:
            raise ValueError(f"bad port range {lo}-{hi}")
        self.lo, self.hi = lo, hi
        self._held: dict[int, str] = {}

    @property
    def held(self) -> dict[int, str]:
        return dict(self._held)

    def reserve(self, owner: str, avoid: Iterable[int] = ()) -> int:
        """The lowest free port, now held by ``owner``."""
        skip = set(avoid)
        for port in range(self.lo, self.hi + 1):
            if port not in self._held and port not in skip:
                self._held[port] = owner
                return port
        raise PortsExhausted(f"all ports {self.lo}-{self.hi} are in use")

    def claim(self, port: int, owner: str) -> bool:
        """Hold a known port (adoption); True when it was free or already ``owner``'s."""
        holder = self._held.setdefault(port, owner)
        return holder == owner

    def rename(self, port: int, owner: str) -> None:
        """Give a held port a new owner (a reservation becomes a container id)."""
        if port in self._held:
            self._held[port] = owner

    def release(self, port: int) -> None:
        self._held.pop(port, None)

    def __contains__(self, port: object) -> bool:
        return port in self._held
