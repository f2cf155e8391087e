"""The ledger labels documented in docs/threat_model.md: the backticked names in the first cell of its tables' rows."""
from __future__ import annotations

import re
from pathlib import Path

__all__ = ["THREAT_MODEL", "documented_labels"]

THREAT_MODEL = Path(__file__).resolve().parent.parent / "docs" / "threat_model.md"


def documented_labels(path: Path = THREAT_MODEL) -> set[str]:
    """Every label named in the first column of a table row (``| `a`, `b` | ... |``)."""
    labels = set()
    for line in path.read_text().splitlines():
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        first = line.split("|")[1]
        labels.update(re.findall(r"`([A-Za-z0-9_.]+)`", first))
    return labels
