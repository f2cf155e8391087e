"""Party identities: keys, self-signed certificates, fingerprints, file modes and the ``keys`` CLI."""
from __future__ import annotations

import stat

import pytest
from click.testing import CliRunner
from cryptography import x509

from cipherome.cli.main import cli
from cipherome.mpc.tls import (
    TLSError,
    fingerprint_pem,
    load_identity,
    make_identity,
    normalise_fingerprint,
    write_identity,
)


def test_identity_certificate_facts():
    ident = make_identity("site-a", hosts=["10.0.0.7", "hospital.example.org"])
    cert = x509.load_pem_x509_certificate(ident.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"site-a", "localhost", "hospital.example.org"} <= set(san.get_values_for_type(x509.DNSName))
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.0.0.7"}
    assert cert.issuer == cert.subject
    assert len(ident.fingerprint) == 64 and ident.fingerprint == fingerprint_pem(ident.cert_pem)
    assert make_identity("site-a").fingerprint != ident.fingerprint


@pytest.mark.parametrize("bad", ["", "Site", "a_b", "-a", "a" * 64, "a b"])
def test_names_must_be_dns_labels(bad):
    with pytest.raises(TLSError, match="invalid party name"):
        make_identity(bad)


def test_fingerprint_forms():
    fp = make_identity("x").fingerprint
    colon = ":".join(fp[i:i + 2] for i in range(0, 64, 2)).upper()
    assert normalise_fingerprint(colon) == fp
    assert normalise_fingerprint("sha256:" + fp) == fp
    with pytest.raises(TLSError):
        normalise_fingerprint("abc")


def test_write_and_load(tmp_path):
    ident = make_identity("p0")
    key, cert = write_identity(ident, tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert load_identity("p0", key, cert).fingerprint == ident.fingerprint
    with pytest.raises(TLSError, match="already exists"):
        write_identity(ident, tmp_path)
    other = make_identity("p0")
    key.write_bytes(other.key_pem)
    with pytest.raises(TLSError, match="do not belong together"):
        load_identity("p0", key, cert)
    with pytest.raises(TLSError, match="cannot read"):
        load_identity("p0", tmp_path / "nope.key", cert)


def test_keys_cli(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["keys", "init", "--party", "site-b", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    fp = fingerprint_pem((tmp_path / "site-b.crt").read_bytes())
    assert f"fingerprint: {fp}" in res.output
    assert "PRIVATE KEY" not in res.output
    assert stat.S_IMODE((tmp_path / "site-b.key").stat().st_mode) == 0o600
    res = runner.invoke(cli, ["keys", "fingerprint", str(tmp_path / "site-b.crt")])
    assert res.output.strip() == fp
    res = runner.invoke(cli, ["keys", "init", "--party", "site-b", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "already exists" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, ["keys", "init", "--party", "Bad_Name", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "invalid party name" in res.output
