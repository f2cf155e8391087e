"""The ``cipherome`` command: a click group whose sub-commands live one per module.

Each module listed in ``COMMANDS`` defines a click command (or group) object; the
group imports them lazily so that ``cipherome --help`` stays fast and a broken
optional dependency in one command cannot break the others.
"""
from __future__ import annotations

import importlib
import logging
import sys

import click

__all__ = ["main", "cli", "COMMANDS"]

#: command name -> "module:attribute" (modules relative to cipherome.cli)
COMMANDS: dict[str, str] = {
    "demo": "demo:demo",
    "bench": "bench:bench",
    "local-stats": "local_stats:local_stats",
    "keys": "keys:keys",
    "party": "party:party",
    "job": "job:job",
    "gwas": "gwas:gwas",
    "freq": "freq:freq",
    "filter": "filter:filter_cmd",
    "simulate": "simulate:simulate",
}


class LazyGroup(click.Group):
    """A click group that imports each sub-command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._spec_exists(name))

    @staticmethod
    def _spec_exists(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(f"cipherome.cli.{module}") is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not self._spec_exists(name):
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(f"cipherome.cli.{module}"), attr)


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="cipherome")
def cli(verbose: int) -> None:
    """cipherome: secure multi-party computation for genomics."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def main() -> None:
    """Console entry point; user-facing errors exit with status 2 and no traceback."""
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
