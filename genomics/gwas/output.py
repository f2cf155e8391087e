"""Writers for secure-GWAS results in PLINK 2's formats, the run report, and the plots.

Every file is written to a temporary name and renamed into place, so that an
interrupted or failed run never leaves a half-written result behind. Numbers are
printed as PLINK 2 prints them (6 significant digits, ``NA`` with an ERRCODE).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cipherome.genomics.gwas.gc import lambda_gc
from cipherome.genomics.io.writers import atomic_path

__all__ = ["AssocTable", "write_glm", "write_json", "manhattan_plot", "qq_plot", "fmt_g", "result_table",
           "write_gwas_outputs", "SUFFIX"]


def fmt_g(v: float) -> str:
    """A number as PLINK 2 prints it: 6 significant digits, NA for NaN."""
    if v is None or not np.isfinite(v):
        return "NA"
    return f"{v:.6g}"


@dataclass
class AssocTable:
    """One row per tested variant; arrays of shape (V,).

    chrom, pos, vid, ref, alt, a1: variant columns (a1 = tested allele);
    obs_ct int64; stat columns by name (e.g. BETA, SE, T_STAT, P) float64 with NaN
    where not computed; errcode str ('.' when fine).
    """

    chrom: np.ndarray
    pos: np.ndarray
    vid: np.ndarray
    ref: np.ndarray
    alt: np.ndarray
    a1: np.ndarray
    obs_ct: np.ndarray
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    errcode: np.ndarray | None = None
    extra_before_test: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pos)


def write_glm(path: str | Path, table: AssocTable, test="ADD") -> Path:
    """Write a ``.glm.linear`` / ``.glm.logistic`` file with PLINK 2's header and column order.

    ``test``: the TEST column, one string for every row or an array (V,) of them.
    """
    tests = np.broadcast_to(np.asarray(test, dtype=object), (len(table),))
    cols = ["#CHROM", "POS", "ID", "REF", "ALT", "A1", *table.extra_before_test, "TEST", "OBS_CT", *table.stats, "ERRCODE"]
    err = table.errcode if table.errcode is not None else np.full(len(table), ".", dtype=object)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write("\t".join(cols) + "\n")
        for i in range(len(table)):
            row = [str(table.chrom[i]), str(int(table.pos[i])), str(table.vid[i]), str(table.ref[i]),
                   str(table.alt[i]), str(table.a1[i])]
            row += [str(v[i]) for v in table.extra_before_test.values()]
            row += [str(tests[i]), str(int(table.obs_ct[i]))]
            row += [fmt_g(v[i]) for v in table.stats.values()]
            row.append(str(err[i]))
            fh.write("\t".join(row) + "\n")
    return path


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON (numpy scalars and arrays converted)."""

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, default=default)
        fh.write("\n")
    return path


def _chrom_order(chrom: np.ndarray) -> tuple[np.ndarray, list]:
    def key(c):
        s = str(c)
        return (0, int(s)) if s.isdigit() else (1, s)

    names = sorted(set(map(str, chrom)), key=key)
    return np.array([names.index(str(c)) for c in chrom]), names


def _pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, path: str | Path) -> Path:
    """Write a figure atomically as PNG and release it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    _pyplot().close(fig)
    return path


def manhattan_plot(path: str | Path, chrom, pos, p, title: str = "", highlight=None) -> Path:
    """PNG Manhattan plot: -log10 p by chromosome and position, genome-wide line at 5e-8."""
    plt = _pyplot()
    chrom, pos, p = np.asarray(chrom), np.asarray(pos, dtype=float), np.asarray(p, dtype=float)
    ok = np.isfinite(p) & (p > 0)
    idx, names = _chrom_order(chrom)
    x = np.zeros(len(pos))
    ticks, offset = [], 0.0
    for c in range(len(names)):
        sel = idx == c
        if not sel.any():
            continue
        x[sel] = pos[sel] + offset
        ticks.append((offset + pos[sel].max() / 2, names[c]))
        offset += pos[sel].max() * 1.02
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    colors = np.where(idx % 2 == 0, "#1f4e79", "#6fa8dc")
    ax.scatter(x[ok], -np.log10(p[ok]), c=colors[ok], s=6, linewidths=0)
    if highlight is not None and len(highlight):
        h = np.zeros(len(p), bool)
        h[np.asarray(highlight)] = True
        h &= ok
        ax.scatter(x[h], -np.log10(p[h]), facecolors="none", edgecolors="#c00000", s=40, label="planted")
        ax.legend(loc="upper right", fontsize=8)
    ax.axhline(-np.log10(5e-8), color="#c00000", lw=0.8, ls="--")
    ax.set_xticks([t[0] for t in ticks], [t[1] for t in ticks], fontsize=8)
    ax.set_xlabel("chromosome")
    ax.set_ylabel("-log10(p)")
    ax.set_title(title)
    fig.tight_layout()
    return _save_png(fig, path)


def qq_plot(path: str | Path, p, title: str = "", p_before=None) -> Path:
    """PNG QQ plot of -log10 p against the uniform expectation, lambda_GC in the title."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    lam = lambda_gc(p=np.asarray(p, float))
    series = [(p, f"lambda_GC = {lam:.3f}", "#1f4e79")]
    if p_before is not None:
        series.insert(0, (p_before, f"before PC adjustment: lambda_GC = {lambda_gc(p=np.asarray(p_before, float)):.3f}", "#aaaaaa"))
    top = 1.0
    for pv, label, color in series:
        pv = np.sort(np.asarray(pv, float)[np.isfinite(pv)])
        pv = pv[pv > 0]
        exp = -np.log10((np.arange(1, pv.size + 1) - 0.5) / pv.size)
        obs = -np.log10(pv)
        ax.scatter(exp, obs, s=6, c=color, label=label, linewidths=0)
        top = max(top, exp.max(initial=1), obs.max(initial=1))
    ax.plot([0, top], [0, top], color="#c00000", lw=0.8)
    ax.set_xlabel("expected -log10(p)")
    ax.set_ylabel("observed -log10(p)")
    ax.set_title(f"{title}  lambda_GC = {lam:.3f}".strip())
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save_png(fig, path)


#: output file suffix of each association test (PLINK 2's names; trend: PLINK 1.9's TREND row)
SUFFIX = {"linear": "glm.linear", "logistic": "glm.logistic", "trend": "trend"}
#: TEST column of each association test when the result does not give one per row
TEST_NAME = {"linear": "ADD", "logistic": "ADD", "trend": "TREND"}


def result_table(result: dict) -> tuple[AssocTable, str]:
    """The lead's GWAS result as an ``AssocTable`` and the file suffix (``SUFFIX``)."""
    v = result["variants"]
    tested = np.asarray(result["tested"], dtype=np.int64)
    a1_alt = np.asarray(result["a1_is_alt"], dtype=bool)
    ref, alt = np.asarray(v["ref"], dtype=object)[tested], np.asarray(v["alt"], dtype=object)[tested]
    assoc = result["assoc"]
    table = AssocTable(
        chrom=np.asarray(v["chrom"], dtype=object)[tested], pos=np.asarray(v["pos"])[tested],
        vid=np.asarray(v["id"], dtype=object)[tested], ref=ref, alt=alt, a1=np.where(a1_alt, alt, ref),
        obs_ct=np.asarray(assoc["obs_ct"]), stats={k: np.asarray(c, float) for k, c in assoc["columns"].items()},
        errcode=np.asarray(assoc["errcode"], dtype=object),
    )
    return table, SUFFIX[result["glm"]]


def write_gwas_outputs(prefix: str | Path, pheno: str, result: dict, reports: dict,
                       highlight_ids=None, extra: dict | None = None, p_before=None) -> dict[str, Path]:
    """Write the association table, QC summary, plots and run report of a secure GWAS.

    Files: PREFIX.PHENO.glm.linear (or .glm.logistic, .trend), PREFIX.PHENO.qc.json,
    PREFIX.PHENO.manhattan.png, PREFIX.PHENO.qq.png, PREFIX.PHENO.run.json, and with
    --pca PREFIX.eigenval (per-party stages with time, bytes and rounds,
    and every party's disclosure ledger). ``p_before``: p-values of the same test
    without PC adjustment, drawn in grey on the QQ plot. Returns name -> path.
    """
    prefix = str(prefix)
    table, suffix = result_table(result)
    test = result["assoc"].get("test", TEST_NAME[result["glm"]])
    paths = {"assoc": write_glm(f"{prefix}.{pheno}.{suffix}", table, test=test)}
    qc = dict(result["qc"], n_samples_qc=result["n_qc"], n_samples_assoc=result["n_assoc"],
              n_common_variants=result["n_variants"])
    base = f"{prefix}.{pheno}"
    paths["qc"] = write_json(f"{base}.qc.json", qc)
    p = table.stats["P"]
    highlight = None
    if highlight_ids is not None:
        want = set(map(str, highlight_ids))
        highlight = np.flatnonzero([str(i) in want for i in table.vid])
    title = f"secure GWAS: {pheno} ({result['glm']}, N = {result['n_assoc']})"
    paths["manhattan"] = manhattan_plot(f"{base}.manhattan.png", table.chrom, table.pos, p, title, highlight)
    paths["qq"] = qq_plot(f"{base}.qq.png", p, title=pheno, p_before=p_before)
    run = {
        "test": result["glm"], "trait": result["trait"], "covariates": result["covariates"],
        "lambda_gc": lambda_gc(p=p), "seconds": result.get("seconds"),
        "parties": {name: {k: rep.get(k) for k in ("role", "bytes_sent", "bytes_received", "rounds", "stages", "ledger")}
                    for name, rep in reports.items()},
        **(extra or {}),
    }
    paths["run"] = write_json(f"{base}.run.json", run)
    if result.get("pca") is not None:  # plink2 --pca's .eigenval: one eigenvalue per line
        path = Path(f"{prefix}.eigenval")
        with atomic_path(path) as tmp, open(tmp, "w") as fh:
            fh.write("".join(f"{fmt_g(v)}\n" for v in np.asarray(result["pca"]["eigenvalues"], float)))
        paths["eigenval"] = path
    return paths
