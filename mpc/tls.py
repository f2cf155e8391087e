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
    "cert_validity",
    "check_cert_valid",
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


def make_identity(name: str, *, days: float = _VALID_DAYS, hosts: list[str] | None = None,
                  start: _dt.datetime | None = None) -> Identity:
    """New ECDSA P-256 key and self-signed certificate for party ``name``.

    SAN: the DNS name ``name`` (peers connect with it as the TLS target name, so a
    certificate is valid whatever address the party runs at), ``localhost``,
    127.0.0.1 and any extra ``hosts`` (DNS names or IP addresses). The
    certificate is its own CA (basicConstraints CA, path length 0) so that it
    can sit in a root set; key usage: signatures, TLS server and client auth.
    Valid from ``start`` (default: 5 minutes ago) for ``days`` days.
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
    begin = start or _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(begin)
        .not_valid_after(begin + _dt.timedelta(days=days))
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
    if os.name == "posix" and (mode := key_path.stat().st_mode) & 0o077:
        raise TLSError(f"{key_path} is readable or writable by group or others (mode {mode & 0o777:o}); a private "
                       f"key must be private: run 'chmod 600 {key_path}'")
    check_cert_valid(cert_pem, f"{name!r} ({cert_path})")
    return Identity(name, key_pem, cert_pem)


def cert_validity(pem: bytes | str) -> tuple[_dt.datetime, _dt.datetime]:
    """(not valid before, not valid after) of a PEM certificate, as aware UTC datetimes."""
    if isinstance(pem, str):
        pem = pem.encode()
    cert = x509.load_pem_x509_certificate(pem)
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def check_cert_valid(pem: bytes | str, what: str, now: _dt.datetime | None = None) -> None:
    """Raise ``TLSError`` naming ``what`` and the date if the certificate has expired or is not valid yet.

    TLS handshakes with such a certificate fail on both sides with no word on why;
    checking first turns that into a message that says which certificate and when.
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    try:
        start, end = cert_validity(pem)
    except ValueError as exc:
        raise TLSError(f"the certificate of {what} is not a PEM certificate ({exc})") from None
    if now > end:
        raise TLSError(f"the certificate of {what} expired on {end:%Y-%m-%d %H:%M} UTC; renew it with "
                       "'cipherome keys init' and send the new fingerprint to the study owner")
    if now < start:
        raise TLSError(f"the certificate of {what} is not valid before {start:%Y-%m-%d %H:%M} UTC; "
                       "check the clock of this machine")
