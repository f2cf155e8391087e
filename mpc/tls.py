"""Party identities: an ECDSA P-256 key and a self-signed certificate per party, named by its fingerprint.

Trust in cipherome is explicit, never the system store: a study file lists every
party's certificate and its fingerprint (SHA-256 of the DER certificate, hex), and
a daemon's TLS root set is exactly those certificates, so a peer is accepted
only if it holds the private key of a certificate the study lists.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "Identity",
    "NAME_RE",
    "check_name",
    "make_identity",
    "write_identity",
    "load_identity",
    "fingerprint",
    "fingerprint_pem",
    "normalise_fingerprint",
    "TLSError",
]

#: party and submitter names: they become DNS names in certificates (SAN)
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_VALID_DAYS = 3650


class TLSError(ValueError):
    """A key or certificate file is missing, unreadable or does not match."""


@dataclass(frozen=True)
class Identity:
    """A party's TLS identity: PEM private key, PEM certificate and its fingerprint."""

    name: str
    key_pem: bytes
    cert_pem: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint_pem(self.cert_pem)


def check_name(name: str, what: str = "party name") -> str:
    """Return ``name`` if it is a valid party/submitter name (lower-case DNS label), else raise ``TLSError``."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise TLSError(
            f"invalid {what} {name!r}: use 1-63 lower-case letters, digits and '-' "
            "(it becomes a DNS name in the certificate)"
        )
    return name


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding of ``cert``, as 64 lower-case hex digits."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def fingerprint_pem(pem: bytes | str) -> str:
    """Fingerprint of the (first) certificate in a PEM text."""
    if isinstance(pem, str):
        pem = pem.encode()
    try:
        return fingerprint(x509.load_pem_x509_certificate(pem))
    except ValueError as exc:
        raise TLSError(f"not a PEM certificate ({exc})") from None


def normalise_fingerprint(fp: str) -> str:
    """Accept 'AB:CD:..', 'sha256:abcd..' or plain hex; return 64 lower-case hex digits."""
    s = str(fp).strip().lower()
    if s.startswith("sha256:"):
        s = s[7:]
    s = s.replace(":", "")
    if not re.fullmatch(r"[0-9a-f]{64}", s):
        raise TLSError(f"invalid certificate fingerprint {fp!r}: expected 64 hex digits (SHA-256)")
    return s


def make_identity(name: str, *, days: int = _VALID_DAYS, hosts: list[str] | None = None) -> Identity:
    """New ECDSA P-256 key and self-signed certificate for party ``name``.

    SAN: the DNS name ``name`` (peers connect with it as the TLS target name, so a
    certificate is valid whatever address the party runs at), ``localhost``,
    127.0.0.1 and any extra ``hosts`` (DNS names or IP addresses). The
    certificate is its own CA (basicConstraints CA, path length 0) so that it
    can sit in a root set; key usage: signatures, TLS server and client auth.
    """
    check_name(name)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cipherome party")])
    alt: list[x509.GeneralName] = [x509.DNSName(name), x509.DNSName("localhost"),
                                   x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for h in hosts or []:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Identity(name, key_pem, cert.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file with mode 0600 (created so, never widened), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_identity(ident: Identity, out_dir: str | Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` (mode 0600) and ``NAME.crt`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = out / f"{ident.name}.key", out / f"{ident.name}.crt"
    if not overwrite:
        for p in (key_path, cert_path):
            if p.exists():
                raise TLSError(f"{p} already exists; remove it or choose another --out folder")
    _write_private(key_path, ident.key_pem)
    tmp = cert_path.with_name(cert_path.name + ".tmp")
    tmp.write_bytes(ident.cert_pem)
    os.replace(tmp, cert_path)
    return key_path, cert_path


def load_identity(name: str, key_path: str | Path, cert_path: str | Path) -> Identity:
    """Read a key and certificate pair and check that they belong together."""
    key_path, cert_path = Path(key_path), Path(cert_path)
    try:
        key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
    except OSError as exc:
        raise TLSError(f"cannot read {exc.filename}: {exc.strerror}; run 'cipherome keys init'") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TLSError(f"{key_path}: not an unencrypted PEM private key ({exc})") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise TLSError(f"{cert_path}: not a PEM certificate ({exc})") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != cert.public_key().public_bytes(
            serialization.Encoding.DER, pub):
        raise TLSError(f"{key_path} and {cert_path} do not belong together (different public keys)")
    if os.name == "posix" and key_path.stat().st_mode & 0o077:
        import logging

        logging.getLogger("cipherome.tls").warning("%s is readable by others; run 'chmod 600 %s'", key_path, key_path)
    return Identity(name, key_pem, cert_pem)
