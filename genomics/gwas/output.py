"""Writers for secure-GWAS results in PLINK 2's formats, the run report, and the plots.

Every file is written to a temporary name and renamed into place, so that an
interrupted or failed run never leaves a half-written result behind. Numbers are
printed as PLINK 2 prints them (6 significant digits, ``NA`` with an ERRCODE).
"""
from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cipherome.genomics.gwas.gc import lambda_gc
from cipherome.genomics.gwas.glm_cols import beta_scale, column_sets_of
from cipherome.genomics.io.writers import atomic_path

__all__ = ["AssocTable", "write_glm", "write_json", "manhattan_plot", "qq_plot", "qq_band", "adjustment", "fmt_g",
           "result_table", "write_gwas_outputs", "SUFFIX", "optional_columns"]


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


def write_glm(path: str | Path, table: AssocTable, test="ADD", drop=()) -> Path:
    """Write a ``.glm.linear`` / ``.glm.logistic`` file with PLINK 2's header and column order.

    ``test``: the TEST column, one string for every row or an array (V,) of them; ``drop``:
    column names left out (``--glm cols=`` without their sets; '#' then marks the first column).
    """
    tests = np.broadcast_to(np.asarray(test, dtype=object), (len(table),))
    cols = ["#CHROM", "POS", "ID", "REF", "ALT", "A1", *table.extra_before_test, "TEST", "OBS_CT", *table.stats, "ERRCODE"]
    keep = [j for j, c in enumerate(cols) if c not in set(drop)]
    header = [cols[j] for j in keep]
    header[0] = "#" + header[0].lstrip("#")
    err = table.errcode if table.errcode is not None else np.full(len(table), ".", dtype=object)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write("\t".join(header) + "\n")
        for i in range(len(table)):
            row = [str(table.chrom[i]), str(int(table.pos[i])), str(table.vid[i]), str(table.ref[i]),
                   str(table.alt[i]), str(table.a1[i])]
            row += [str(v[i]) for v in table.extra_before_test.values()]
            row += [str(tests[i]), str(int(table.obs_ct[i]))]
            row += [fmt_g(v[i]) for v in table.stats.values()]
            row.append(str(err[i]))
            fh.write("\t".join(row[j] for j in keep) + "\n")
    return path


def optional_columns(optional: dict | None) -> dict[str, np.ndarray]:
    """``--glm cols=``'s released optional columns as printed strings, in plink2's order.

    MACH_R2 prints ``nan`` for a monomorphic variant (as plink2); withheld values print NA.
    """
    if not optional:
        return {}
    held = np.asarray(optional["withheld"], bool)
    out = {}
    for name, v in optional["columns"].items():
        v = np.asarray(v, float)
        text = np.array([fmt_g(x) for x in v], dtype=object)
        if name == "MACH_R2":
            text[np.isnan(v) & ~held] = "nan"
        out[name] = text
    return out


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
    ax.set_title("\n".join(textwrap.wrap(title, 110)), fontsize=10)
    fig.tight_layout()
    return _save_png(fig, path)


def qq_band(n: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected -log10 p of n uniform p-values and the pointwise ``level`` band around it.

    Under the null the k-th smallest of n uniform p-values is Beta(k, n - k + 1)
    distributed, so the band is that distribution's (1 - level)/2 and (1 + level)/2
    quantiles; returns (expected, lower, upper) in -log10 units, each of shape (n,).
    """
    from scipy.special import betaincinv  # Beta(a, b)'s quantile, as scipy.stats.beta.ppf evaluates it

    k = np.arange(1, n + 1)
    expected = -np.log10((k - 0.5) / n)
    lo = -np.log10(betaincinv(k, n - k + 1, (1 + level) / 2))
    hi = -np.log10(betaincinv(k, n - k + 1, (1 - level) / 2))
    return expected, lo, hi


def qq_plot(path: str | Path, p, title: str = "", p_before=None) -> Path:
    """PNG QQ plot of -log10 p against the uniform expectation, with the null's 95% band.

    The x axis ends at the largest expected value and the y axis at the largest
    observed one (each with a small margin), so the points fill the plot; the grey
    band is where 95% of each order statistic falls when no variant is associated.
    lambda_GC is in the legend (and, for ``p``, in the title).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    lam = lambda_gc(p=np.asarray(p, float))
    series = [(p, f"lambda_GC = {lam:.3f}", "#1f4e79")]
    if p_before is not None:
        series.insert(0, (p_before, f"before PC adjustment: lambda_GC = {lambda_gc(p=np.asarray(p_before, float)):.3f}", "#aaaaaa"))
    x_top, y_top = 1.0, 1.0
    for i, (pv, label, color) in enumerate(series):
        pv = np.sort(np.asarray(pv, float)[np.isfinite(pv)])
        pv = pv[pv > 0]
        if not pv.size:
            continue
        exp, lo, hi = qq_band(pv.size)
        if i == len(series) - 1:  # one band: the plotted test's number of p-values
            ax.fill_between(exp, lo, hi, color="#dddddd", lw=0, label="95% band under the null")
        ax.scatter(exp, -np.log10(pv), s=6, c=color, label=label, linewidths=0)
        x_top = max(x_top, exp[0])
        y_top = max(y_top, -np.log10(pv[0]), hi[0])
    ax.plot([0, x_top], [0, x_top], color="#c00000", lw=0.8)
    ax.set_xlim(0, x_top * 1.04)
    ax.set_ylim(0, y_top * 1.04)
    ax.set_xlabel("expected -log10(p)")
    ax.set_ylabel("observed -log10(p)")
    # a square plot is narrow: the adjustment goes on its own line (textwrap) so the title is never clipped
    ax.set_title("\n".join(textwrap.wrap(f"{title}  lambda_GC = {lam:.3f}".strip(), 52)), fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _save_png(fig, path)


def adjustment(covariates: list[str], secure_pcs: list[str] = ()) -> str:
    """How an association was adjusted, for titles: the covariates, then the number of secure PCs."""
    pcs = [c for c in covariates if c in set(secure_pcs)]
    other = [c for c in covariates if c not in pcs]
    parts = ([", ".join(other)] if other else []) + ([f"{len(pcs)} secure PCs"] if pcs else [])
    return "adjusted for " + " + ".join(parts) if parts else "no covariates, no PCs"


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
        extra_before_test=optional_columns(assoc.get("optional")),
    )
    if "beta" in result.get("glm_cols", ()):
        table.stats = beta_scale(table.stats)
    if "firth" in assoc:  # plink2's default firth-fallback: a FIRTH? column (after the optional ones), .hybrid
        table.extra_before_test["FIRTH?"] = np.where(np.asarray(assoc["firth"], bool), "Y", "N")
        return table, SUFFIX[result["glm"]] + ".hybrid"
    return table, SUFFIX[result["glm"]]


def write_gwas_outputs(prefix: str | Path, pheno: str, result: dict, reports: dict,
                       highlight_ids=None, extra: dict | None = None, p_before=None) -> dict[str, Path]:
    """Write the association table, QC summary, plots and run report of a secure GWAS.

    Files: PREFIX.PHENO.glm.linear (or .glm.logistic.hybrid as plink2's firth-fallback, .trend), PREFIX.PHENO.qc.json,
    PREFIX.PHENO.manhattan.png, PREFIX.PHENO.qq.png, PREFIX.PHENO.run.json, and with
    --pca PREFIX.PHENO.eigenval (so that the next trait never overwrites it). The run report
    has per-party stages with time, bytes and rounds,
    and every party's disclosure ledger). ``p_before``: p-values of the same test
    without PC adjustment, drawn in grey on the QQ plot. Returns name -> path.
    """
    prefix = str(prefix)
    table, suffix = result_table(result)
    test = result["assoc"].get("test", TEST_NAME[result["glm"]])
    drop = column_sets_of(result.get("glm_drop", ()), result.get("glm_cols", ()))
    paths = {"assoc": write_glm(f"{prefix}.{pheno}.{suffix}", table, test=test, drop=drop)}
    qc = dict(result["qc"], n_samples_qc=result["n_qc"], n_samples_assoc=result["n_assoc"],
              n_common_variants=result["n_variants"], policy_min_cell_size=result.get("min_cell_size", 0))
    base = f"{prefix}.{pheno}"
    paths["qc"] = write_json(f"{base}.qc.json", qc)
    p = table.stats["P"]
    highlight = None
    if highlight_ids is not None:
        want = set(map(str, highlight_ids))
        highlight = np.flatnonzero([str(i) in want for i in table.vid])
    adj = adjustment(list(result["covariates"]), (result.get("pca") or {}).get("names", ()))
    title = (f"secure GWAS: {pheno} ({result['glm']}, N = {result['n_assoc']}, {adj}), "
             f"lambda_GC = {lambda_gc(p=p):.3f}")
    paths["manhattan"] = manhattan_plot(f"{base}.manhattan.png", table.chrom, table.pos, p, title, highlight)
    paths["qq"] = qq_plot(f"{base}.qq.png", p, title=f"{pheno} ({adj})", p_before=p_before)
    run = {
        "test": result["glm"], "trait": result["trait"], "covariates": result["covariates"],
        "lambda_gc": lambda_gc(p=p), "seconds": result.get("seconds"),
        "parties": {name: {k: rep.get(k) for k in ("role", "bytes_sent", "bytes_received", "rounds", "stages", "ledger")}
                    for name, rep in reports.items()},
        **(extra or {}),
    }
    paths["run"] = write_json(f"{base}.run.json", run)
    if result.get("pca") is not None:  # plink2 --pca's .eigenval: one eigenvalue per line, per trait
        path = Path(f"{base}.eigenval")
        with atomic_path(path) as tmp, open(tmp, "w") as fh:
            fh.write("".join(f"{fmt_g(v)}\n" for v in np.asarray(result["pca"]["eigenvalues"], float)))
        paths["eigenval"] = path
    return paths
