"""Engine container specs: the preset's command and environment land in the Docker create body."""

from __future__ import annotations

from acestream_gateway.fleet.specs import create_body
from acestream_gateway.settings import Settings


def test_the_default_image_is_created_with_its_port_as_arguments_and_published_on_it() -> None:
    body = create_body(Settings(), 19007)
    assert body["Image"] == "ghcr.io/martinbjeldbak/acestream-http-proxy:latest"
    assert body["Cmd"] == ["--http-port", "19007"]
    assert body["Env"] == ["ALLOW_REMOTE_ACCESS=yes"]
    assert body["ExposedPorts"] == {"19007/tcp": {}}
    assert body["HostConfig"]["PortBindings"] == {
        "19007/tcp": [{"HostIp": "127.0.0.1", "HostPort": "19007"}]
    }


def test_an_image_configured_by_environment_keeps_its_own_command() -> None:
    body = create_body(Settings(engine_preset="krinkuto11"), 19001)
    assert "Cmd" not in body
    assert body["Env"] == ["HTTP_PORT=19001", "BIND_ALL=true"]


def test_custom_with_nothing_set_leaves_the_image_as_it_is() -> None:
    body = create_body(Settings(engine_preset="custom"), 19001)
    assert "Cmd" not in body
    assert body["Env"] == []
