"""Registers the genomics workloads (GWAS, variant filtering) as named jobs for party daemons.

``cipherome.mpc.jobs`` imports this module on first lookup, so a daemon can run
``gwas`` without ``mpc`` importing ``genomics``.
"""
from cipherome.genomics.gwas import job as gwas  # noqa: F401  (registers "gwas")
from cipherome.genomics.gwas import freq  # noqa: F401  (registers "gwas.freq")
from cipherome.genomics.filtering import job as filtering  # noqa: F401

__all__: list[str] = []
