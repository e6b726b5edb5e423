"""Certificates for mutual TLS (RFC 8705) against the real IdP.

:func:`make_certificates` writes, into one directory, a test CA, the IdP's
https server certificate for 127.0.0.1 (signed by the CA), a client
certificate signed by the CA, one signed by another CA (refused: not
verified) and a self-signed client certificate. ``tests/idp/server.mjs``
reads them from ``AUTHPULSE_IDP_MTLS_DIR``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# fixed dates: a certificate of the tests never expires under them
_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Certificates:
    """The paths of the PEM files of :func:`make_certificates`."""

    directory: Path
    ca: Path
    #: signed by the CA: ``tls_client_auth`` of ``authpulse-mtls``
    client: Path
    client_key: Path
    #: signed by another CA: the IdP does not verify it
    stranger: Path
    stranger_key: Path
    #: self-signed, its x5c registered for ``authpulse-mtls-self``
    self_signed: Path
    self_signed_key: Path

    @staticmethod
    def thumbprint(cert: Path) -> str:
        """The ``x5t#S256`` of a certificate (RFC 8705 §3.1), base64url."""
        der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        digest = hashlib.sha256(der).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def make_certificates(directory: Path) -> Certificates:
    """Write the CA, the server's and the clients' certificates into ``directory``."""
    keys = {
        stem: ec.generate_private_key(ec.SECP256R1())
        for stem in ("ca", "other-ca", "server", "client", "stranger", "self-signed")
    }
    ca = _issue("authpulse test CA", keys["ca"], ca=True)
    other_ca = _issue("another test CA", keys["other-ca"], ca=True)
    signer = (ca.subject, keys["ca"])
    ca_path, _ = _write(directory, "ca", ca, keys["ca"])
    _write(
        directory,
        "server",
        _issue("127.0.0.1", keys["server"], signer, ip="127.0.0.1"),
        keys["server"],
    )
    client = _write(
        directory, "client", _issue("authpulse-mtls", keys["client"], signer), keys["client"]
    )
    stranger = _write(
        directory,
        "stranger",
        _issue("authpulse-mtls", keys["stranger"], (other_ca.subject, keys["other-ca"])),
        keys["stranger"],
    )
    self_signed = _write(
        directory,
        "self-signed",
        _issue("authpulse-mtls-self", keys["self-signed"]),
        keys["self-signed"],
    )
    return Certificates(directory, ca_path, *client, *stranger, *self_signed)
