"""The gateway's configuration: one frozen object read from environment variables at start.

Names follow acestream-orchestrator where the meaning is the same, so its users can carry their
settings over. Every field has a default that works out of the box; invalid values stop the process
at start with a message naming the variable (see :func:`describe_errors`).
"""

from __future__ import annotations

import json
import os
import re
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import hdhr_id, presets
from .docker_endpoints import DockerEndpoint, parse_docker_endpoints
from .engine_urls import EngineUrl, parse_engine_urls

_PORT_RANGE = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")
_CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PortRange(tuple[int, int]):
    """An inclusive range of TCP ports, written ``lo-hi``."""

    __slots__ = ()

    @property
    def lo(self) -> int:
        return self[0]

    @property
    def hi(self) -> int:
        return self[1]

    def __len__(self) -> int:  # the number of ports, not the tuple's length
        return self.hi - self.lo + 1

    def __str__(self) -> str:
        return f"{self.lo}-{self.hi}"

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.lo <= port <= self.hi

    def ports(self) -> range:
        return range(self.lo, self.hi + 1)

    @classmethod
    def parse(cls, text: str) -> PortRange:
        match = _PORT_RANGE.match(text)
        if match is None:
            raise ValueError(f"must be 'lo-hi' with two port numbers, got {text!r}")
        lo, hi = int(match[1]), int(match[2])
        if not 1 <= lo <= hi <= 65535:
            raise ValueError(f"must satisfy 1 <= lo <= hi <= 65535, got {text!r}")
        return cls((lo, hi))


class Settings(BaseSettings):
    """Everything the gateway can be told, from the environment (case-insensitive names)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    # --- where the gateway listens -------------------------------------------------------------
    gateway_host: str = "0.0.0.0"
    """Address the gateway's HTTP server binds to."""
    gateway_port: int = Field(8000, ge=1, le=65535)
    """TCP port of the gateway's HTTP server."""
    gateway_instance_name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    """Label value that keeps two gateways on one Docker host out of each other's engines."""
    state_dir: Path = Field(default_factory=lambda: _default_state_dir())
    """Directory of what must outlive the gateway process: the session journal (one file per
    GATEWAY_INSTANCE_NAME), from which a start ends engine sessions a dead gateway left behind.
    An absolute path; the image declares it as a volume."""

    # --- the engine fleet ----------------------------------------------------------------------
    engine_urls: Annotated[tuple[EngineUrl, ...], NoDecode] = ()
    """Engines the gateway uses but does not run (``http://host:port,...``). When set, no Docker
    is used at all and the settings in ``DOCKER_ONLY`` do not apply; MAX_STREAMS_PER_ENGINE does."""
    min_replicas: int = 1
    """Engines with no stream kept ready at all times (>= 1), capped by MAX_ACTIVE_REPLICAS."""
    max_active_replicas: int = Field(20, ge=1)
    """Most engine containers the gateway runs at once, in every mode."""
    max_streams_per_engine: int = Field(2, ge=1)
    """Most engine sessions (distinct channels) one engine carries at once."""
    port_range_host: Annotated[PortRange, NoDecode] = PortRange((19000, 19999))
    """Inclusive host port range (``lo-hi``) engines' HTTP ports are taken from, one per engine."""
    engine_image: str = Field("ghcr.io/martinbjeldbak/acestream-http-proxy:latest", min_length=1)
    """Docker image of the AceStream engine; pulled if missing."""
    engine_preset: str | None = None
    """Which image contract fills the engine's command and environment from its port:
    ``martinbjeldbak``, ``krinkuto11``, ``jopsis`` or ``custom`` (see docs/ENGINE_IMAGES.md).
    Unset: the preset of a known ENGINE_IMAGE, else ``martinbjeldbak`` (the default image's)."""
    engine_args: str = ""
    """Extra engine arguments, after the preset's own (split as a shell would); ``{port}`` stands
    for the engine's HTTP port. With ENGINE_PRESET=custom: the whole container command, and empty
    keeps the image's own."""
    engine_env: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    """Engine environment as a JSON object, added to the preset's (on the same name this value
    wins); ``{port}`` in values stands for the engine's HTTP port."""
    engine_host_address: str = "127.0.0.1"
    """Host address engines' ports are published on, and the address the gateway calls them at."""
    engine_network: str | None = None
    """Docker network engines join (default: Docker's default bridge)."""
    docker_endpoints: Annotated[tuple[DockerEndpoint, ...], NoDecode] = ()
    """Several Docker daemons engines run on, as a JSON list of endpoints ``{"name", "url",
    "tls", "engine_host", "ports", "max_engines", "network", "gluetun_container_name"}`` (see
    README, "Several Docker hosts"); unset: one endpoint, from DOCKER_HOST (or the local socket),
    ENGINE_HOST_ADDRESS, PORT_RANGE_HOST, ENGINE_NETWORK and GLUETUN_CONTAINER_NAME."""
    fleet_backend: Literal["docker", "swarm"] = "docker"
    """Where engines run: ``docker``, containers on the Docker endpoint(s); ``swarm``, one-replica
    services on the Docker Swarm whose manager DOCKER_HOST names, each engine's HTTP port
    published in host mode on the node its task runs on (see README, "Docker Swarm")."""
    swarm_constraints: str = ""
    """With FLEET_BACKEND=swarm: the engine services' placement constraints, comma-separated
    (e.g. ``node.labels.acestream==true``); empty: any node."""
    engine_name_prefix: str = Field("acestream-engine", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Prefix of engine container names (followed by the instance name and the port)."""
    engine_startup_timeout_s: float = Field(60.0, gt=0)
    """Seconds a new engine container may take to answer its HTTP API before it is replaced."""
    engine_grace_period_s: float = Field(30.0, ge=0)
    """Seconds an engine must have been idle before a surplus engine is removed."""
    health_check_interval_s: float = Field(10.0, gt=0)
    """Seconds between two reconciliations of the fleet (adoption, replicas, health)."""
    docker_timeout_s: float = Field(30.0, gt=0)
    """Seconds one Docker API call may take (image pulls get ten times as long)."""
    provision_concurrency: int = Field(3, ge=1)
    """Most engines started at the same time when the fleet must grow by several."""
    port_recheck_s: float = Field(30.0, gt=0)
    """Seconds a host port that another program holds (Docker could not bind it) is left alone
    before it is tried again."""

    # --- VPN mode (Gluetun) ----------------------------------------------------------------------
    gluetun_container_name: Annotated[tuple[str, ...], NoDecode] = ()
    """VPN containers (comma-separated names) whose network namespace engines join; empty: no
    VPN, every engine in its own. PORT_RANGE_HOST is split among them in order, and each must
    publish its share (see README, "VPN mode")."""
    gluetun_api_url: Annotated[tuple[str, ...], NoDecode] = ()
    """Gluetun control servers (comma-separated URLs, one per VPN container, in the same order);
    empty: each VPN container's published GLUETUN_CONTROL_PORT."""
    gluetun_control_port: int = Field(8000, ge=1, le=65535)
    """The port Gluetun's control server listens on inside its container (Gluetun's
    HTTP_CONTROL_SERVER_ADDRESS), read from the VPN container's bindings."""
    gluetun_api_key: SecretStr | None = None
    """API key for Gluetun's control server (sent as ``X-API-Key``), when its routes need one."""
    p2p_port_range: Annotated[PortRange | None, NoDecode] = None
    """Engines' P2P ports (``lo-hi``) in VPN mode: the engine on the n-th port of PORT_RANGE_HOST
    gets the n-th port of this range. Unset: the ports right after PORT_RANGE_HOST, as many."""

    # --- health, failover and the provisioning breaker ------------------------------------------
    health_failure_threshold: int = Field(3, ge=1)
    """Consecutive failed probes (or failed session starts) before an engine is UNHEALTHY."""
    health_probe_timeout_s: float = Field(3.0, gt=0)
    """Seconds one health probe of a running engine may take."""
    health_probe_concurrency: int = Field(8, ge=1)
    """Most engines probed at the same time."""
    unhealthy_engine_timeout_s: float = Field(30.0, ge=0)
    """Seconds an unhealthy engine is kept so its channels can move to other engines; it is removed
    as soon as it carries none, and after this long at the latest."""
    failover_attempts: int = Field(3, ge=0)
    """Times a playing channel is opened again (same or other engine) before its players end."""
    failover_backoff_s: float = Field(0.5, ge=0)
    """Delay before the second failover attempt; it doubles for each further one."""
    circuit_breaker_failure_threshold: int = Field(3, ge=1)
    """Consecutive provisioning failures that open the circuit breaker."""
    circuit_breaker_recovery_timeout_s: float = Field(30.0, gt=0)
    """Seconds the breaker first stays open before one probing attempt; doubles on each failure."""
    circuit_breaker_max_backoff_s: float = Field(300.0, gt=0)
    """Longest the breaker stays open between two probing attempts."""

    # --- talking to engines ----------------------------------------------------------------------
    engine_api_timeout_s: float = Field(10.0, gt=0)
    """Seconds an engine may take to answer a JSON API call (starting a session, stat)."""
    engine_stop_timeout_s: float = Field(5.0, gt=0)
    """Seconds a session stop may take; the engine sometimes hangs on stop."""
    first_data_timeout_s: float = Field(60.0, gt=0)
    """Seconds from starting a session until the engine sends its first stream bytes."""
    stall_timeout_s: float = Field(20.0, gt=0)
    """Seconds without stream bytes during playback before the upstream counts as stalled."""
    stream_linger_s: float = Field(5.0, ge=0)
    """Seconds a session lingers after its last player left, so channel zapping reuses it."""
    keepalive_interval_s: float = Field(1.0, gt=0)
    """Seconds between keep-alive TS null packets sent to players while the engine prebuffers."""
    player_buffer_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    """How far (bytes) a player may fall behind the live edge before it is dropped."""
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    """The event loop: uvloop (faster fan-out) when installed with ``auto``, or asyncio's own."""
    provision_wait_s: float = Field(60.0, ge=0)
    """Seconds a new channel waits for a free engine to be provisioned before getting 503."""
    hls_window: int = Field(6, ge=3, le=100)
    """HLS segments a channel's playlist lists (and keeps in memory, plus the one being cut); at
    least 3, as a live playlist must span three target durations (RFC 8216, 6.2.2)."""
    hls_segment_s: float = Field(4.0, ge=1, le=30)
    """HLS segment target: a segment ends at the first keyframe after this many seconds."""
    hls_idle_s: float = Field(30.0, gt=0)
    """Seconds an HLS player's last playlist or segment fetch holds its channel open; at least
    twice HLS_SEGMENT_S, as a player fetches about once a segment."""

    stat_interval_s: float = Field(5.0, gt=0)
    """Seconds between two rounds of asking engines for their playing sessions' figures (peers,
    speeds, ``livepos``), which ``/streams`` shows; one task asks, never a request."""

    allow_url_input: bool = False
    """Whether players may name content by ``url`` or ``magnet`` (the engine then fetches it)."""

    # --- channels, the HDHomeRun tuner and the guide --------------------------------------------
    channels_file: str | None = None
    """A local M3U channel list (channels with several AceStream sources each); see README,
    "Channels and tuner". At most one of CHANNELS_FILE and CHANNELS_URL."""
    channels_url: str | None = Field(None, pattern=r"^https?://\S+$")
    """An http(s) M3U channel list, fetched at start and every CHANNELS_REFRESH_S."""
    channels_refresh_s: float = Field(3600.0, gt=0)
    """Seconds between two loads of the channel list and the guide; a failed load keeps the last
    good copy."""
    channels_fetch_timeout_s: float = Field(30.0, gt=0)
    """Seconds one load of the channel list or of the guide may take before it counts as failed."""
    source_retry_s: float = Field(300.0, ge=0)
    """Seconds a channel's source that failed is skipped by later starts of the channel."""
    epg_url: str | None = Field(None, pattern=r"^https?://\S+$")
    """An http(s) XMLTV guide (plain or gzip) served limited to the lineup as ``/epg.xml``;
    unset: the guide the channel list names (``url-tvg`` / ``x-tvg-url``), if any."""
    epg_file: str | None = None
    """A local XMLTV guide file (plain or gzip), instead of EPG_URL."""
    hdhr_device_id: str | None = None
    """The HDHomeRun tuner's device id (8 hex digits passing libhdhomerun's check digit); unset:
    derived from GATEWAY_INSTANCE_NAME, the same on every start."""
    hdhr_tuner_count: int | None = Field(None, ge=1)
    """Tuners the HDHomeRun tuner announces; unset: the channels the fleet can carry at once
    (MAX_ACTIVE_REPLICAS, or the ENGINE_URLS engines, times MAX_STREAMS_PER_ENGINE)."""
    hdhr_discovery: bool = True
    """Whether the gateway answers HDHomeRun discovery on UDP port 65001 of GATEWAY_HOST when a
    channel list is configured (media servers then find the tuner by themselves)."""

    # --- operations ----------------------------------------------------------------------------
    api_key: SecretStr | None = None
    """Key for the management endpoints (``Authorization: Bearer`` or ``X-API-Key``); unset: they
    are open to whoever reaches the gateway."""
    protect_reads: bool = False
    """Whether the read endpoints (status, listings, metrics) need API_KEY too; ``/health`` and
    ``/ready`` never do (probes)."""
    player_token: SecretStr | None = None
    """Token players must give as the ``token`` query parameter of ``/ace/getstream`` (players
    cannot set headers); unset: any player may play. Never logged."""
    player_channel_starts_per_minute: int = Field(0, ge=0)
    """Most distinct channels one client address may start within a minute (joining a channel
    that already plays is free); 0: no limit. For gateways reachable from beyond a LAN."""
    player_limit_ipv6_prefix: int = Field(64, ge=1, le=128)
    """Prefix length that makes one IPv6 client for the per-client limits (channel starts,
    refused keys, connections): a household or host gets a whole /64 and can rotate addresses
    within it. IPv4 clients are one address each."""
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()
    """Reverse proxies (comma-separated addresses or networks) whose ``X-Forwarded-For`` names
    the client; empty: no forwarded header is believed and each peer is the client. Connections
    still count for the proxy (MAX_CONNECTIONS_PER_CLIENT)."""
    client_header_timeout_s: float = Field(60.0, gt=0)
    """Seconds a new connection may take to send its first request's complete headers before it
    is closed (nginx's ``client_header_timeout``); a streaming player is never cut by it."""
    keepalive_timeout_s: float = Field(75.0, gt=0)
    """Seconds an idle kept-alive connection (between two requests) stays open; it bounds a new
    connection's wait for its first request too, when shorter than CLIENT_HEADER_TIMEOUT_S."""
    max_connections_per_client: int = Field(256, ge=1)
    """Most connections one client (address; IPv6 by PLAYER_LIMIT_IPV6_PREFIX) holds at once;
    past it a connection gets ``429`` and is closed."""
    max_waiting_channels: int = Field(32, ge=1)
    """Most channels waiting for their start at once (an engine, then its session); a new
    channel beyond it gets ``503`` with ``Retry-After``, joining a channel that exists never
    does. A household starts a few at once, a site's crowd after a restart a few dozen; each
    waiting channel holds tasks and may have an engine provisioned for it."""
    public_base_url: str | None = Field(None, pattern=r"^https?://[^\s/?#@]+(/[^\s?#@]*)?$")
    """Base of the player URLs a rewritten playlist gets (``http://host:port[/path]``, no
    credentials: they would land in every playlist); unset: the request's own ``Host``."""
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias=AliasChoices("log_level", "LOG_LEVEL")
    )
    """Lowest level of log events written."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """``json`` lines, readable ``console`` lines, or ``auto``: console on a terminal, else JSON."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("port_range_host", mode="before")
    @classmethod
    def _parse_port_range(cls, value: object) -> object:
        return PortRange.parse(value) if isinstance(value, str) else value

    @field_validator("docker_endpoints", mode="before")
    @classmethod
    def _parse_docker_endpoints(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_docker_endpoints(value, PortRange.parse)
        return value

    @field_validator("engine_urls", mode="before")
    @classmethod
    def _parse_engine_urls(cls, value: object) -> object:
        return parse_engine_urls(value) if isinstance(value, str) else value

    @field_validator("p2p_port_range", mode="before")
    @classmethod
    def _parse_p2p_range(cls, value: object) -> object:
        if isinstance(value, str):
            return PortRange.parse(value) if value.strip() else None
        return value

    @field_validator("gluetun_container_name", mode="before")
    @classmethod
    def _parse_vpn_names(cls, value: object) -> tuple[str, ...]:
        names = _comma_list(value)
        for name in names:
            if not _CONTAINER_NAME.match(name):
                raise ValueError(f"{name!r} is not a container name")
        if len(set(names)) != len(names):
            raise ValueError("names a container twice")
        return names

    @field_validator("gluetun_api_url", mode="before")
    @classmethod
    def _parse_vpn_urls(cls, value: object) -> tuple[str, ...]:
        urls = _comma_list(value)
        for url in urls:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return tuple(url.rstrip("/") for url in urls)

    @field_validator("engine_env", mode="before")
    @classmethod
    def _parse_engine_env(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            parsed = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            raise ValueError('must be a JSON object such as {"HTTP_PORT": "{port}"}') from None
        if not isinstance(parsed, dict):
            raise ValueError('must be a JSON object such as {"HTTP_PORT": "{port}"}')
        return {str(k): str(v) for k, v in parsed.items()}

    @field_validator("engine_env")
    @classmethod
    def _env_format(cls, value: dict[str, str]) -> dict[str, str]:
        for template in value.values():
            presets.check_template(template)
        return value

    @field_validator("engine_preset", mode="before")
    @classmethod
    def _known_preset(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None  # set but empty: as if unset
        return presets.preset_named(value).name

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        networks = []
        for item in _comma_list(value):
            try:
                networks.append(ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return tuple(networks)

    @field_validator("api_key", "player_token", mode="before")
    @classmethod
    def _secret_not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            # A compose file's ${API_KEY} with nothing behind it: open by accident, not by choice.
            raise ValueError("is set but empty; unset the variable to leave this open")
        return value

    @model_validator(mode="after")
    def _hls_hold_outlasts_a_segment(self) -> Settings:
        if self.hls_idle_s < 2 * self.hls_segment_s:
            raise ValueError(
                "HLS_IDLE_S must be at least twice HLS_SEGMENT_S: an HLS player fetches about "
                "once a segment, and a shorter hold lapses between its fetches"
            )
        return self

    @model_validator(mode="after")
    def _swarm_on_one_manager(self) -> Settings:
        if self.fleet_backend == "swarm" and self.docker_endpoints:
            raise ValueError(
                "FLEET_BACKEND=swarm runs engines on the Swarm of DOCKER_HOST: "
                "unset DOCKER_ENDPOINTS"
            )
        if self.fleet_backend == "swarm" and self.vpn_mode:
            raise ValueError("FLEET_BACKEND=swarm does not run engines behind a VPN container")
        return self

    @model_validator(mode="after")
    def _reads_protected_by_a_key(self) -> Settings:
        if self.protect_reads and self.api_key is None:
            raise ValueError("PROTECT_READS=true needs API_KEY: without a key nothing is protected")
        return self

    @field_validator("state_dir")
    @classmethod
    def _absolute_state_dir(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("min_replicas")
    @classmethod
    def _at_least_one_spare(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be >= 1: the gateway always keeps an empty engine, got {value}")
        return value

    @field_validator("engine_args")
    @classmethod
    def _args_format(cls, value: str) -> str:
        for word in presets.split_args(value):
            presets.check_template(word)
        return value

    @field_validator("hdhr_device_id", mode="before")
    @classmethod
    def _valid_device_id(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None
            return f"{hdhr_id.parse(value):08X}"
        return value

    @field_validator("channels_file", "epg_file", "channels_url", "epg_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("channels_file", "epg_file")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{value!r} is not a file")
        return value

    @model_validator(mode="after")
    def _one_channel_list(self) -> Settings:
        if self.channels_file and self.channels_url:
            raise ValueError("set CHANNELS_FILE or CHANNELS_URL, not both")
        if self.epg_file and self.epg_url:
            raise ValueError("set EPG_FILE or EPG_URL, not both")
        return self

    @property
    def channels_location(self) -> str | None:
        """Where the channel list is read from (a path or a URL), if anywhere."""
        return self.channels_file or self.channels_url

    @property
    def guide_location(self) -> str | None:
        """The guide EPG_FILE or EPG_URL names, if any."""
        return self.epg_file or self.epg_url

    def hdhr_device(self) -> int:
        """The HDHomeRun device id: HDHR_DEVICE_ID, else derived from the instance name."""
        if self.hdhr_device_id is not None:
            return int(self.hdhr_device_id, 16)
        return hdhr_id.derive(self.gateway_instance_name)

    def hdhr_tuners(self) -> int:
        """The tuners announced: HDHR_TUNER_COUNT, else what the fleet carries at once."""
        if self.hdhr_tuner_count is not None:
            return self.hdhr_tuner_count
        engines = len(self.engine_urls) or self.max_active_replicas
        return engines * self.max_streams_per_engine

    @property
    def static_fleet(self) -> bool:
        """Whether the engines are the fixed ENGINE_URLS list rather than Docker containers."""
        return bool(self.engine_urls)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.static_fleet:
            return self  # the limits below size a Docker fleet, which there is none of
        if self.min_replicas > self.max_active_replicas:
            raise ValueError(
                f"MIN_REPLICAS ({self.min_replicas}) must not exceed "
                f"MAX_ACTIVE_REPLICAS ({self.max_active_replicas})"
            )
        if len(self.port_range_host) < self.max_active_replicas:
            raise ValueError(
                f"PORT_RANGE_HOST ({self.port_range_host}) has {len(self.port_range_host)} ports, "
                f"fewer than MAX_ACTIVE_REPLICAS ({self.max_active_replicas})"
            )
        return self

    @model_validator(mode="after")
    def _engine_launch_fits(self) -> Settings:
        if not self.static_fleet:
            self.engine_launch_template()  # ENGINE_ARGS the preset's image would ignore, and such
        return self

    @model_validator(mode="after")
    def _vpn_mode_fits(self) -> Settings:
        self._check_vpn_fit()
        return self

    @model_validator(mode="after")
    def _endpoint_vpns_fit(self) -> Settings:
        """An endpoint of DOCKER_ENDPOINTS with VPN containers of its own is checked as VPN mode
        is, on its own ports (its view is made without the checks of a fresh load)."""
        for endpoint in self.docker_endpoints:
            if endpoint.gluetun_container_name:
                try:
                    self.for_endpoint(endpoint)._check_vpn_fit()
                except ValueError as exc:
                    said = str(exc).replace("PORT_RANGE_HOST", "its 'ports'")
                    said = said.replace("GLUETUN_CONTAINER_NAME", "its 'gluetun_container_name'")
                    raise ValueError(
                        f"DOCKER_ENDPOINTS: endpoint {endpoint.name!r}: {said}"
                    ) from None
        return self

    def _check_vpn_fit(self) -> None:
        """VPN mode's start checks: a control server per VPN container, a port per container at
        least, a P2P port per engine port outside the HTTP ports, and ``{p2p_port}`` where the
        engines of one namespace need it."""
        vpns = len(self.gluetun_container_name)
        if not vpns:
            return
        if self.gluetun_api_url and len(self.gluetun_api_url) != vpns:
            raise ValueError(
                f"GLUETUN_API_URL names {len(self.gluetun_api_url)} control servers for "
                f"{vpns} containers of GLUETUN_CONTAINER_NAME: give one per container, in order"
            )
        if len(self.port_range_host) < vpns:
            raise ValueError(
                f"PORT_RANGE_HOST ({self.port_range_host}) has fewer ports than "
                f"GLUETUN_CONTAINER_NAME has containers ({vpns})"
            )
        self._check_p2p_range()
        template = self.engine_launch_template()
        if template.render(presets.EnginePorts(1, 1)) == template.render(presets.EnginePorts(1, 2)):
            raise ValueError(
                "engines behind GLUETUN_CONTAINER_NAME share one network namespace, so each needs "
                "its own P2P port: put {p2p_port} in ENGINE_ARGS or ENGINE_ENV"
            )

    def _check_p2p_range(self) -> None:
        ports = self.port_range_host
        p2p = self.p2p_ports()
        name = "P2P_PORT_RANGE" if self.p2p_port_range else "PORT_RANGE_HOST (P2P ports after it)"
        if p2p.hi > 65535 or len(p2p) < len(ports):
            raise ValueError(
                f"{name}: {len(ports)} P2P ports are needed, one per port of PORT_RANGE_HOST "
                f"({ports}); set P2P_PORT_RANGE to a range of that many ports"
            )
        if p2p.lo <= ports.hi and ports.lo <= p2p.hi:
            raise ValueError(f"P2P_PORT_RANGE ({p2p}) overlaps PORT_RANGE_HOST ({ports})")

    _endpoint_name: str | None = PrivateAttr(None)

    @property
    def endpoint_name(self) -> str | None:
        """The DOCKER_ENDPOINTS endpoint these settings are the view of (its engines carry its
        name in a label and in their container names), or None: the one default endpoint."""
        return self._endpoint_name

    def endpoints(self) -> tuple[DockerEndpoint, ...]:
        """The Docker endpoints engines run on: DOCKER_ENDPOINTS, else one from today's
        settings (DOCKER_HOST or the local socket, ENGINE_HOST_ADDRESS, PORT_RANGE_HOST)."""
        if self.docker_endpoints:
            return self.docker_endpoints
        local = DockerEndpoint(
            name="local",
            url=None,
            tls=None,
            engine_host=self.engine_host_address,
            ports=(self.port_range_host.lo, self.port_range_host.hi),
            max_engines=self.max_active_replicas,
            network=self.engine_network,
            gluetun_container_name=self.gluetun_container_name,
            named=False,
        )
        return (local,)

    def for_endpoint(self, endpoint: DockerEndpoint) -> Settings:
        """These settings as one endpoint's backend sees them: its ports, engine address,
        network and VPN containers in place of the process-wide ones."""
        if not endpoint.named:
            return self
        view = self.model_copy(
            update={
                "port_range_host": PortRange(endpoint.ports),
                "engine_host_address": endpoint.engine_host,
                "engine_network": endpoint.network,
                "gluetun_container_name": endpoint.gluetun_container_name,
                # GLUETUN_API_URL names the process-wide VPNs' control servers, in their order:
                # an endpoint with VPNs of its own reaches theirs at their published port.
                "gluetun_api_url": (
                    self.gluetun_api_url
                    if endpoint.gluetun_container_name == self.gluetun_container_name
                    else ()
                ),
            }
        )
        view._endpoint_name = endpoint.name
        return view

    @property
    def vpn_mode(self) -> bool:
        """Whether engines run in VPN containers' network namespaces (GLUETUN_CONTAINER_NAME)."""
        return bool(self.gluetun_container_name)

    def p2p_ports(self) -> PortRange:
        """The P2P port range: P2P_PORT_RANGE, else as many ports right after PORT_RANGE_HOST
        (its upper end may pass 65535 here; validation refuses that in VPN mode)."""
        if self.p2p_port_range is not None:
            return self.p2p_port_range
        size = len(self.port_range_host)
        return PortRange((self.port_range_host.hi + 1, self.port_range_host.hi + size))

    def p2p_port(self, port: int) -> int:
        """The P2P port of the engine whose HTTP port is ``port`` (same place in its range)."""
        return self.p2p_ports().lo + (port - self.port_range_host.lo)

    def engine_preset_choice(self) -> tuple[presets.Preset, str]:
        """The preset engines get, and what chose it (ENGINE_PRESET, ENGINE_IMAGE or default)."""
        return presets.choose_preset(self.engine_preset, self.engine_image)

    def engine_launch_template(self) -> presets.Launch:
        """The engine containers' command and environment, placeholders not yet filled in."""
        preset, _ = self.engine_preset_choice()
        return preset.launch(self.engine_args, self.engine_env, shared_namespace=self.vpn_mode)

    def engine_launch(self, port: int, p2p_port: int | None = None) -> presets.Launch:
        """The command and environment of the engine container whose HTTP port is ``port``
        (and, in VPN mode, whose P2P port is ``p2p_port``, by default its own from the range)."""
        if p2p_port is None:
            p2p_port = self.p2p_port(port) if self.vpn_mode else presets.EnginePorts(port).p2p_port
        ports = presets.EnginePorts(port=port, p2p_port=p2p_port)
        return self.engine_launch_template().render(ports)

    def masked(self) -> dict[str, object]:
        """The effective configuration by environment variable name, secrets masked."""
        shown: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********"
            elif isinstance(value, PortRange):
                value = str(value)
            elif name == "engine_urls":
                value = ",".join(str(url) for url in value)
            elif isinstance(value, tuple):
                value = ",".join(str(item) for item in value)
            shown[name.upper()] = value
        # Not variables: what the settings add up to.
        shown["FLEET (effective)"] = self._fleet_shown()
        if not self.static_fleet:
            shown.update(self._launch_shown())
        return shown

    def _fleet_shown(self) -> dict[str, object]:
        if not self.static_fleet:
            return {"kind": "docker", "engines": "containers the gateway starts and removes"}
        return {
            "kind": "static",
            "engines": {url.name: str(url) for url in self.engine_urls},
            "not_applying": [name.upper() for name in DOCKER_ONLY],
        }

    def _launch_shown(self) -> dict[str, object]:
        preset, chosen_by = self.engine_preset_choice()
        launch = self.engine_launch_template()
        return {
            "ENGINE_PRESET": preset.name,
            # What the image, preset, ENGINE_ARGS and ENGINE_ENV add up to.
            "ENGINE_LAUNCH (effective)": {
                "preset": preset.name,
                "chosen_by": chosen_by,
                "contract": preset.summary,
                "command": list(launch.command) or "the image's own",
                "environment": dict(launch.environment),
            },
        }


# The settings of the Docker fleet alone: with ENGINE_URLS they are read but not used.
DOCKER_ONLY = (
    "gateway_instance_name",
    "min_replicas",
    "max_active_replicas",
    "port_range_host",
    "engine_image",
    "engine_preset",
    "engine_args",
    "engine_env",
    "engine_host_address",
    "engine_network",
    "engine_name_prefix",
    "engine_startup_timeout_s",
    "engine_grace_period_s",
    "docker_timeout_s",
    "provision_concurrency",
    "port_recheck_s",
    "unhealthy_engine_timeout_s",
    "circuit_breaker_failure_threshold",
    "circuit_breaker_recovery_timeout_s",
    "circuit_breaker_max_backoff_s",
)


def _comma_list(value: object) -> tuple[str, ...]:
    """A comma-separated variable (or a sequence) as a tuple of its non-empty items."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("must be a comma-separated list")
    return tuple(str(item).strip() for item in items if str(item).strip())


def load_settings() -> Settings:
    """Read the settings from the environment (raises :class:`ValidationError`)."""
    return Settings()


def describe_errors(error: ValidationError) -> list[str]:
    """One line per problem, naming the environment variable, for a message at start."""
    lines = []
    for item in error.errors(include_url=False):
        name = "_".join(str(part) for part in item["loc"]).upper() or "configuration"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {message} (got {item.get('input')!r})" if item["loc"] else message)
    return lines


def _default_state_dir() -> Path:
    """Where a plain process keeps its state: ``$XDG_STATE_HOME/acestream-gateway``, else
    ``~/.local/state/acestream-gateway``, else (a user without a home) ``/var/tmp``'s (the image
    sets STATE_DIR to its volume)."""
    base = os.environ.get("XDG_STATE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".local" / "state")
        except (RuntimeError, KeyError):  # no HOME, and a uid with no passwd entry
            base = "/var/tmp"
    return Path(base).absolute() / "acestream-gateway"
