"""TLS material: the configured certificate, or a self-signed one made on first start.

One context serves every listener: implicit TLS (995, 993) and STLS/STARTTLS
on the plain ports.  The self-signed certificate names localhost, the
loopback addresses and the configured host name, so that clients which check
names (mbsync, curl with --cacert) can be pointed at it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.store.fsutil import atomic_write

log = Logger()

SELF_SIGNED_DIR = "tls"


def self_signed_paths(data_dir: str) -> tuple[str, str]:
    d = os.path.join(data_dir, SELF_SIGNED_DIR)
    return os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")


def make_self_signed(cert_path: str, key_path: str, hostname: str = "localhost") -> None:
    """Write a self-signed certificate and key (key file mode 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names = {"localhost", hostname, socket.gethostname()}
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(n for n in names if n)]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname or "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    os.makedirs(os.path.dirname(cert_path) or ".", exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    # Key first: a crash between the two leaves a key without a certificate,
    # which resolve_paths replaces, never a certificate without its key.
    atomic_write(key_path, key_bytes)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def configured_pair(cert: str | None, key: str | None) -> tuple[str, str] | None:
    """(cert, key) from the configuration, None when neither is set; a
    single PEM file given as either may hold both."""
    if cert and key:
        return cert, key
    either = cert or key
    return (either, either) if either else None


def check_pair(cert: str, key: str) -> tuple[list[str], str | None]:
    """Problems with a certificate/key pair (empty: usable) and, when it is
    usable, a line describing it (subject, expiry).  What both ``twistd
    mailsrv`` (before it binds anything) and ``mailsrv config check`` say."""
    import datetime

    from OpenSSL import SSL, crypto

    problems = [f"cannot read TLS {what} {path}: {_why_unreadable(path)}"
                for what, path in (("certificate", cert), ("key", key)) if not os.access(path, os.R_OK)]
    if problems:
        return sorted(set(problems)), None
    if cert == key and b"PRIVATE KEY-----" not in _head(key):
        return [f"TLS certificate {cert} is given without a key, and it holds none: "
                "give the key too (--tls-key or [tls] key)"], None
    if cert == key and b"-----BEGIN CERTIFICATE-----" not in _head(cert):
        return [f"TLS key {key} is given without a certificate, and it holds none: "
                "give the certificate too (--tls-cert or [tls] cert)"], None
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    for what, path, use in (("certificate", cert, ctx.use_certificate_chain_file),
                            ("key", key, ctx.use_privatekey_file)):
        try:
            use(path)
        except SSL.Error as e:
            if "mismatch" in ssl_reason(e):  # OpenSSL compares as it loads the key
                return [f"TLS key {key} does not match certificate {cert}"], None
            return [f"TLS {what} {path} is unusable: {ssl_reason(e)}"], None
    try:
        ctx.check_privatekey()
    except SSL.Error:
        return [f"TLS key {key} does not match certificate {cert}"], None
    with open(cert, "rb") as f:
        x509 = crypto.load_certificate(crypto.FILETYPE_PEM, f.read()).to_cryptography()
    not_after = x509.not_valid_after_utc
    note = f"{cert}: {x509.subject.rfc4514_string()}, valid until {not_after:%Y-%m-%d %H:%M} UTC"
    if not_after < datetime.datetime.now(datetime.timezone.utc):
        return [f"TLS certificate {cert} expired on {not_after:%Y-%m-%d}"], note
    return [], note


def _why_unreadable(path: str) -> str:
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return "permission denied"


def _head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(1 << 20)


def ssl_reason(e: Exception) -> str:
    """OpenSSL's reason strings of an SSL.Error, joined."""
    try:
        return "; ".join(str(part[2]) for part in e.args[0]) or str(e)
    except (IndexError, TypeError):
        return str(e)


def resolve_paths(cert: str | None, key: str | None, data_dir: str, hostname: str) -> tuple[str, str]:
    """The configured pair, or the self-signed pair under ``data_dir`` (made if missing)."""
    pair = configured_pair(cert, key)
    if pair is not None:
        return pair
    cert_path, key_path = self_signed_paths(data_dir)
    if not (os.path.exists(cert_path) and os.path.exists(key_path)):
        make_self_signed(cert_path, key_path, hostname)
        log.info("generated a self-signed TLS certificate: {path}", path=cert_path)
    return cert_path, key_path


def load_context(cert_path: str, key_path: str) -> ssl.CertificateOptions:
    """A server context from PEM files (the key may be inside the cert file)."""
    with open(cert_path, "rb") as f:
        cert_pem = f.read()
    key_pem = cert_pem
    if key_path != cert_path:
        with open(key_path, "rb") as f:
            key_pem = f.read()
    private = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    chain = [c for c in _extra_certs(cert_pem)]
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        extraCertChain=chain or None,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )


def _extra_certs(pem: bytes) -> Iterator[Any]:
    """Intermediate certificates after the first one (Let's Encrypt fullchain.pem)."""
    marker = b"-----BEGIN CERTIFICATE-----"
    parts = pem.split(marker)[2:]
    for part in parts:
        yield ssl.Certificate.loadPEM(marker + part).original


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableContext:
    """A context factory whose certificate can be swapped (SIGHUP) without a restart."""

    def __init__(self, cert_path: str, key_path: str) -> None:
        self.cert_path, self.key_path = cert_path, key_path
        self._options = load_context(cert_path, key_path)

    def reload(self) -> None:
        self._options = load_context(self.cert_path, self.key_path)

    def getContext(self) -> Any:
        return self._options.getContext()

    def serverConnectionForTLS(self, tlsProtocol: Any) -> Any:
        return self._options.serverConnectionForTLS(tlsProtocol)
