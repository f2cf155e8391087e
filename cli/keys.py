"""``cipherome keys``: make a party's (or submitter's) TLS key and certificate, and show fingerprints.

The private key is written with mode 0600 and never printed; the fingerprint
(SHA-256 of the certificate) is what the study owner puts in the study file.
"""
from __future__ import annotations

import click

__all__ = ["keys"]


@click.group("keys")
def keys() -> None:
    """Create keys and certificates; print fingerprints."""


@keys.command("init")
@click.option("--party", "name", required=True, help="Party or submitter name (lower-case letters, digits, '-').")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder (not a prefix; created if missing) for NAME.key (mode 0600) and NAME.crt.")
@click.option("--host", "hosts", multiple=True, help="Extra DNS name or IP address for the certificate (repeatable).")
@click.option("--days", default=3650, show_default=True, help="Validity of the certificate in days.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(name: str, out_dir: str, hosts: tuple[str, ...], days: int, force: bool) -> None:
    """Create an ECDSA P-256 key and a self-signed certificate for party NAME."""
    from cipherome.mpc.tls import TLSError, make_identity, write_identity

    try:
        ident = make_identity(name, days=days, hosts=list(hosts))
        key_path, cert_path = write_identity(ident, out_dir, overwrite=force)
    except TLSError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write into {out_dir}: {exc.strerror}") from None
    click.echo(f"key:         {key_path} (mode 0600, keep it private)")
    click.echo(f"certificate: {cert_path}")
    click.echo(f"fingerprint: {ident.fingerprint}")


@keys.command("fingerprint")
@click.argument("cert", type=click.Path(exists=True, dir_okay=False))
def fingerprint_cmd(cert: str) -> None:
    """Print the SHA-256 fingerprint of a PEM certificate."""
    from pathlib import Path

    from cipherome.mpc.tls import TLSError, fingerprint_pem

    try:
        click.echo(fingerprint_pem(Path(cert).read_bytes()))
    except TLSError as exc:
        raise click.ClickException(f"{cert}: {exc}") from None
