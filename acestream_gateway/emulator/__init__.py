"""A faithful AceStream engine emulator: test and demo equipment, never imported by the gateway.

It reproduces the engine's HTTP API and its quirks (see ENGINE_API.md) so the gateway can be tested
against something that behaves like the engine in the field. It runs as a local process for fast
tests and as a container image for fleet tests. Modules here use relative imports only and depend on
nothing but the standard library and aiohttp (>= 3.8, the version Debian bookworm ships), because
the image copies this folder alone as the package ``acestream_emulator``.
"""
