"""Certificates for ``wss://``: the operator's own, or a self-signed one made once and reused.

FunASR's clients connect with TLS by default and do not verify the
certificate, so a server that speaks TLS out of the box needs some
certificate.  The reference ships a fixed key pair in its repository; we
generate a private one per machine on first start instead (RSA 2048, valid
for ten years, for ``localhost``, the loopback addresses and the host name)
and keep it in a directory the operator chooses, so restarts and every
worker present the same certificate.
"""
from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

log = logging.getLogger(__name__)

SELF_SIGNED_CERT = "server.crt"
SELF_SIGNED_KEY = "server.key"


class TlsSetupError(ValueError):
    """A certificate or key the server cannot use; the message names the file and the reason."""


@dataclass(frozen=True)
class TlsPolicy:
    """How the one port treats TLS (see :mod:`server.port_sharing`)."""

    context: Optional[ssl.SSLContext] = None  # None: plain ws:// only
    tls_only: bool = False  # refuse connections that do not start with a TLS handshake
    handshake_timeout: float = 10.0  # seconds for the first byte and the TLS handshake


def server_context(certfile: Path, keyfile: Optional[Path] = None) -> ssl.SSLContext:
    """A server-side context for ``certfile`` (PEM, with its key inside unless ``keyfile`` is given)."""
    if not certfile.is_file():
        raise TlsSetupError(f"certificate {certfile} does not exist")
    if keyfile is not None and not keyfile.is_file():
        raise TlsSetupError(f"key {keyfile} does not exist")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError(f"cannot load the certificate {certfile}: {exc}") from None
    return context


def self_signed_pair(directory: Path) -> Tuple[Path, Path]:
    """The certificate and key in ``directory``, generated there first if either is missing."""
    cert, key = directory / SELF_SIGNED_CERT, directory / SELF_SIGNED_KEY
    if cert.is_file() and key.is_file():
        return cert, key
    try:
        directory.mkdir(parents=True, exist_ok=True)
        cert_pem, key_pem = _generate_self_signed()
        _write_private(key, key_pem)
        _write_private(cert, cert_pem)
    except OSError as exc:
        raise TlsSetupError(f"cannot write a self-signed certificate to {directory}: {exc}") from None
    log.info("generated a self-signed certificate in %s (pass --certfile to use your own)", directory)
    return cert, key


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600, so a concurrent start never reads half a key."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _generate_self_signed() -> Tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "funasr-wss-server")])
    alt_names: List[x509.GeneralName] = [x509.DNSName("localhost")]
    host = socket.gethostname()
    if host and host != "localhost":
        alt_names.append(x509.DNSName(host))
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
