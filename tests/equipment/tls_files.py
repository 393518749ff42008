"""Certificates for a Docker daemon's TLS listener, made by the tests with the ``openssl`` CLI.

A remote Docker endpoint is guarded the way Docker documents it (``dockerd --tlsverify``): a CA
the daemon trusts, a server certificate naming the daemon's address, and a client certificate and
key signed by the same CA. Keys are EC P-256 (quick to make); certificates carry the extensions a
strict verifier asks for (basic constraints, key usage, key identifiers). A second, unrelated CA
makes a client certificate the daemon must refuse.
"""

from __future__ import annotations

import ipaddress
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_DAYS = "2"
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClientTls:
    """What a client of a TLS Docker endpoint holds: the CA to verify the daemon with, and its
    own certificate and key."""

    ca: Path
    cert: Path
    key: Path

    def as_json(self) -> dict[str, str]:
        """The ``"tls"`` object of a Docker endpoint: ``{"ca", "cert", "key"}`` paths."""
        return {"ca": str(self.ca), "cert": str(self.cert), "key": str(self.key)}

    def docker_args(self) -> list[str]:
        """The docker CLI's options for this identity (before the command)."""
        return [
            "--tlsverify",
            f"--tlscacert={self.ca}",
            f"--tlscert={self.cert}",
            f"--tlskey={self.key}",
        ]

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the daemon and presents this certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


@dataclass(frozen=True)
class Authority:
    """A certificate authority whose key stays in the tests' directory."""

    directory: Path
    pair: KeyPair

    def issue(self, name: str, *, server_ips: Sequence[str] = ()) -> KeyPair:
        """A certificate for ``name``: a server one valid for ``server_ips`` when given, else a
        client one."""
        key, csr, cert = (self.directory / f"{name}{ext}" for ext in ("-key.pem", ".csr", ".pem"))
        _openssl("req", *_KEY, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(_extensions(server_ips))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.pair.cert),
            "-CAkey", str(self.pair.key), "-CAcreateserial", "-out", str(cert),
            "-days", _DAYS, "-sha256", "-extfile", str(extensions),
        )  # fmt: skip
        csr.unlink()
        key.chmod(0o600)
        return KeyPair(cert, key)

    def client(self, name: str) -> ClientTls:
        pair = self.issue(name)
        return ClientTls(self.pair.cert, pair.cert, pair.key)


def new_authority(directory: Path, name: str) -> Authority:
    """A fresh self-signed CA in ``directory`` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    _openssl(
        "req", "-x509", *_KEY, "-keyout", str(key), "-out", str(cert), "-days", _DAYS,
        "-sha256", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    )  # fmt: skip
    key.chmod(0o600)
    return Authority(directory, KeyPair(cert, key))


def _extensions(server_ips: Sequence[str]) -> str:
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid",
    ]
    if server_ips:
        names = ",".join(f"IP:{ipaddress.ip_address(ip)}" for ip in server_ips)
        lines += ["extendedKeyUsage=serverAuth", f"subjectAltName={names}"]
    else:
        lines.append("extendedKeyUsage=clientAuth")
    return "\n".join(lines) + "\n"


def _openssl(*args: str) -> None:
    result = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()[-500:]}")
