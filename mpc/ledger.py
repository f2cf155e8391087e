"""The disclosure ledger: every opening of a shared value, by label, size and recipients.

Openings of masked values (uniformly random to their recipients) and public study
metadata are kept apart from disclosures (values that reveal something about the
data), so that a site's
data officer can audit exactly what left the MPC, and tests can check the
disclosures against the documented list.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["Ledger", "LedgerEntry", "DISCLOSED", "MASKED", "PUBLIC"]

DISCLOSED = "disclosed"  # reveals something about the data (results, QC bits)
MASKED = "masked"  # uniformly random to its recipients (x - a in Beaver products)
PUBLIC = "public"  # study metadata a site shares in the clear (sample count, variant keys)


@dataclass
class LedgerEntry:
    label: str
    kind: str
    recipients: tuple[str, ...]
    elements: int = 0
    count: int = 0

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "kind": self.kind,
            "recipients": list(self.recipients),
            "elements": self.elements,
            "openings": self.count,
        }


class Ledger:
    """Aggregates openings per (label, kind, recipients)."""

    def __init__(self) -> None:
        self._entries: dict[tuple, LedgerEntry] = {}
        self._lock = threading.Lock()

    def record(self, label: str, kind: str, recipients, elements: int) -> None:
        recipients = tuple(sorted(recipients))
        key = (label, kind, recipients)
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                e = self._entries[key] = LedgerEntry(label, kind, recipients)
            e.elements += int(elements)
            e.count += 1

    def entries(self, kind: str | None = None) -> list[LedgerEntry]:
        return [e for e in self._entries.values() if kind is None or e.kind == kind]

    def disclosed_labels(self) -> set[str]:
        return {e.label for e in self.entries(DISCLOSED)}

    def as_list(self) -> list[dict]:
        return [e.as_dict() for e in self._entries.values()]
