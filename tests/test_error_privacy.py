"""Errors that cross a site carry the party and the kind of problem only; details stay in that site's log.

Unique markers are planted in a bad site file - a folder name in its path, a cell
value, a sample ID - and the GWAS is run on real daemons (``LocalCluster``). The
markers must appear in the bad site's own log (the detail is kept for its
operator) and nowhere else: not in another party's or the dealer's log, not in
any party's job status or result document the submitter reads, not in the
submitter's exception text.
"""
import shutil

import pytest

from cipherome.genomics.gwas.params import GwasParams
from cipherome.mpc.client import JobFailed
from cipherome.mpc.launcher import LocalCluster
from tests.site_study import small_study

PATH_MARK, VALUE_MARK, ID_MARK = "zqdirmark7731", "zqvalmark4471", "zqidmark9902"


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    d = tmp_path_factory.mktemp("errpriv")
    study, files, data = small_study(d / "data")
    bad = d / PATH_MARK
    bad.mkdir()
    for ext in ("bed", "bim", "fam", "pheno", "covar"):
        shutil.copy(files["site2"][ext], bad / files["site2"][ext].name)
    data[1] = {"bfile": str(bad / "s.site2"), "pheno": str(bad / "s.site2.pheno"),
               "covar": str(bad / "s.site2.covar")}
    with LocalCluster(3, workdir=d / "cluster", data=data, log_level="INFO") as cluster:
        yield cluster, bad


def _logs(cluster) -> dict[str, str]:
    out = {}
    for name in cluster.names:
        out[name] = "".join(p.read_text(errors="replace") for p in (cluster.dir / "logs").glob(f"{name}.*"))
    return out


def _check_markers(cluster, err: JobFailed, markers: list[str]) -> None:
    logs = _logs(cluster)
    for m in markers:
        assert m in logs["p1"], f"{m} should be in the bad site's own log"
    outside = {f"log of {n}": t for n, t in logs.items() if n != "p1"}
    outside["submitter's exception"] = str(err)
    outside.update({f"status at {p}": repr(i) for p, i in err.infos.items()})
    for p, d in cluster.client.daemons.items():  # what the submitter can fetch from every party
        outside[f"fetched from {p}"] = repr(d.fetch(err.job_id))
    for where, text in outside.items():
        for m in markers:
            assert m not in text, f"marker {m} leaked into the {where}"
    assert "p1" in err.errors["p1"] and "see its log" in err.errors["p1"]
    assert all("p1" in e for e in err.errors.values()), err.errors


def test_non_numeric_cell_stays_in_the_site_log(marked):
    cluster, bad = marked
    ph = bad / "s.site2.pheno"
    lines = ph.read_text().splitlines()
    f = lines[7].split("\t")
    f[2] = VALUE_MARK
    lines[7] = "\t".join(f)
    ph.write_text("\n".join(lines) + "\n")
    with pytest.raises(JobFailed) as err:
        cluster.run("gwas", GwasParams(pheno_name="quant_trait", maf=0.01).to_dict(), timeout=120)
    assert "phenotype file has a non-numeric value; see its log" in err.value.errors["p1"]
    _check_markers(cluster, err.value, [PATH_MARK, VALUE_MARK])


def test_duplicate_sample_id_stays_in_the_site_log(marked):
    cluster, bad = marked
    cv = bad / "s.site2.covar"
    lines = cv.read_text().splitlines()
    for k in (3, 4):
        f = lines[k].split("\t")
        f[0] = f[1] = ID_MARK
        lines[k] = "\t".join(f)
    cv.write_text("\n".join(lines) + "\n")
    # --pheno-name disease: the phenotype file's bad quant_trait cell (previous test) is not read
    with pytest.raises(JobFailed) as err:
        cluster.run("gwas", GwasParams(pheno_name="disease", glm="trend", maf=0.01).to_dict(), timeout=120)
    assert "covariate file lists a sample twice; see its log" in err.value.errors["p1"]
    _check_markers(cluster, err.value, [PATH_MARK, ID_MARK])


#: names that an f-string kind may format: a file category ("phenotype"), a config key, a submitter's parameter error
CATEGORY_NAMES = {"what", "k", "exc"}


def test_every_site_input_error_names_its_kind():
    """Each InputError raised in genomics/ says which kind of problem crosses the site (``kind=``); a kind
    is a short fixed text, never an f-string of data (an ID, path or value), unless the message itself is
    public (``kind=msg``, computed from study-wide values at every party)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "genomics"
    missing, formatted = [], []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "InputError":
                kind = next((k.value for k in node.keywords if k.arg == "kind"), None)
                if kind is None:
                    missing.append(f"{path.name}:{node.lineno}")
                elif isinstance(kind, ast.JoinedStr) and any(
                        not (isinstance(v.value, ast.Name) and v.value.id in CATEGORY_NAMES)
                        for v in kind.values if isinstance(v, ast.FormattedValue)):
                    formatted.append(f"{path.name}:{node.lineno}")
    assert not missing, f"InputError without kind=: {missing}"
    assert not formatted, f"kind= built from data: {formatted}"
