"""Study files and site configurations: who takes part in a study, and what one site allows.

A *study file* (TOML, identical at every site) lists every party of a study -
name, role (site or dealer), address and certificate fingerprint - plus the
submitters allowed to start jobs and the workloads the study covers; a *site
config* (TOML, private to one site) names the site's key, listen address, the
study files it has approved, its local data paths and its policy.

Study file::

    [study]
    id = "bench-demo"             # letters, digits, '.', '_', '-'
    round_timeout = 60            # seconds a party waits for one message (default 60)
    workloads = ["bench", "gwas"] # job name prefixes ("bench" covers "bench.mul")

    [[party]]                     # compute parties in this order; the first is the lead
    name = "site-a"
    role = "site"
    address = "hospital-a.example.org:7300"
    fingerprint = "3f1c...e9"     # SHA-256 of the DER certificate (cipherome keys init prints it)
    cert = "certs/site-a.crt"     # path relative to this file (or cert_pem = "-----BEGIN ...")

    [[party]]                     # exactly one dealer
    name = "dealer"
    role = "dealer"
    address = "helper.example.org:7300"
    fingerprint = "..."
    cert = "certs/dealer.crt"

    [[submitter]]                 # who may submit jobs (authenticated by certificate)
    name = "alice"
    fingerprint = "..."
    cert = "certs/alice.crt"
    role = "submitter"            # default: sees, fetches and cancels only its own jobs;
                                  # "admin": every job of the study (each such access is logged)

Site config::

    [party]
    name = "site-a"
    key = "keys/site-a.key"       # paths relative to this file
    cert = "keys/site-a.crt"
    listen = "0.0.0.0:7300"
    studies = ["studies/bench-demo.toml"]
    log = "logs/site-a.log"       # optional; the daemon also logs to stderr
    plugins = []                  # optional: extra modules that register jobs

    [data]                        # free-form; given to jobs as Site.data
    bfile = "/data/cohort"

    [policy]
    workloads = ["gwas", "filter", "bench"]
    min_cell_size = 5
    max_concurrent_jobs = 4       # default 4
    max_message_mb = 16384        # largest single message accepted from a peer (default 16 GiB)
    keep_results_mb = 1024        # finished jobs' results kept for fetching, in total (default 1 GiB)
    keep_results_hours = 168      # and for at most this long after the job ended (default 7 days)
    keep_jobs = 200               # finished jobs listed by job status (default 200)
"""
from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SiteError
from .tls import TLSError, check_name, fingerprint_pem, normalise_fingerprint

__all__ = [
    "ConfigError",
    "MissingData",
    "StudyParty",
    "Submitter",
    "Study",
    "Site",
    "SiteConfig",
    "load_study",
    "load_site_config",
    "study_toml",
    "site_toml",
    "DEFAULT_ROUND_TIMEOUT",
]

DEFAULT_ROUND_TIMEOUT = 60.0
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ADDR_RE = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


class ConfigError(ValueError):
    """A study file or site config is invalid; the message names the file and what to fix."""


class MissingData(SiteError, KeyError):
    """A job needs a ``[data]`` entry that the site config does not have (its kind names the key)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class StudyParty:
    name: str
    role: str  # "site" | "dealer"
    address: str
    fingerprint: str
    cert_pem: bytes


@dataclass(frozen=True)
class Submitter:
    name: str
    fingerprint: str
    cert_pem: bytes
    role: str = "submitter"  # "submitter": its own jobs only; "admin": every job of the study

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass
class Study:
    """A parsed, validated study file."""

    id: str
    parties: list[StudyParty]
    submitters: list[Submitter]
    workloads: list[str]
    round_timeout: float = DEFAULT_ROUND_TIMEOUT
    path: Path | None = None

    @property
    def sites(self) -> list[str]:
        """Compute-party names in study order (the first is the lead)."""
        return [p.name for p in self.parties if p.role == "site"]

    @property
    def dealer(self) -> str:
        return next(p.name for p in self.parties if p.role == "dealer")

    def party(self, name: str) -> StudyParty | None:
        return next((p for p in self.parties if p.name == name), None)

    def party_by_fingerprint(self, fp: str | None) -> StudyParty | None:
        return next((p for p in self.parties if p.fingerprint == fp), None)

    def submitter_by_fingerprint(self, fp: str | None) -> Submitter | None:
        return next((s for s in self.submitters if s.fingerprint == fp), None)

    def allows_workload(self, job_name: str) -> bool:
        return _workload(job_name) in self.workloads

    @property
    def digest(self) -> str:
        """SHA-256 over the trust-relevant content; two sites with equal digests agree on the study."""
        doc = {
            "id": self.id,
            "round_timeout": self.round_timeout,
            "workloads": sorted(self.workloads),
            "parties": [[p.name, p.role, p.address, p.fingerprint] for p in self.parties],
            "submitters": sorted([s.name, s.fingerprint] + (["admin"] if s.is_admin else []) for s in self.submitters),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def cert_pems(self) -> list[bytes]:
        """Every certificate of the study (parties and submitters): the TLS root set it contributes."""
        return [p.cert_pem for p in self.parties] + [s.cert_pem for s in self.submitters]


def _workload(job_name: str) -> str:
    return job_name.split(".", 1)[0]


@dataclass
class Site:
    """What a job sees of its site: the party name, the free-form ``[data]`` table and the ``[policy]`` table.

    Relative paths in ``data`` are relative to ``config_dir``; ``path(key)`` resolves one.
    """

    name: str
    data: dict = field(default_factory=dict)
    policy: dict = field(default_factory=dict)
    config_dir: Path = field(default_factory=Path.cwd)

    def path(self, key: str) -> Path:
        if key not in self.data:
            raise MissingData(f"site {self.name!r} has no [data] entry {key!r}; add it to the site config",
                              kind=f"its site config has no [data] entry {key!r}")
        p = Path(str(self.data[key])).expanduser()
        return p if p.is_absolute() else self.config_dir / p


@dataclass
class SiteConfig:
    """A parsed, validated site config (the daemon's configuration)."""

    name: str
    key_path: Path
    cert_path: Path
    listen: str
    studies: dict[str, Study]
    data: dict
    policy: dict
    log: Path | None
    plugins: list[str]
    path: Path

    @property
    def site(self) -> Site:
        return Site(self.name, dict(self.data), dict(self.policy), self.path.parent)

    @property
    def workloads(self) -> list[str]:
        return list(self.policy.get("workloads", []))

    @property
    def max_concurrent_jobs(self) -> int:
        return int(self.policy.get("max_concurrent_jobs", 4))

    @property
    def max_message_bytes(self) -> int:
        return int(float(self.policy.get("max_message_mb", 16384)) * (1 << 20))

    @property
    def keep_results_bytes(self) -> int:
        return int(float(self.policy.get("keep_results_mb", 1024)) * (1 << 20))

    @property
    def keep_results_seconds(self) -> float:
        return float(self.policy.get("keep_results_hours", 168)) * 3600.0

    @property
    def keep_jobs(self) -> int:
        return int(self.policy.get("keep_jobs", 200))


# ----------------------------------------------------------------------------- parsing
def _read_toml(path: Path, what: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def _cert_of(entry: dict, base: Path, where: str) -> bytes:
    if "cert_pem" in entry:
        return str(entry["cert_pem"]).encode()
    if "cert" in entry:
        p = Path(str(entry["cert"])).expanduser()
        p = p if p.is_absolute() else base / p
        try:
            return p.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read certificate {p} ({exc.strerror})") from None
    raise ConfigError(f"{where}: give 'cert' (a path) or 'cert_pem' (inline PEM)")


def _checked_cert(entry: dict, base: Path, where: str) -> tuple[str, bytes]:
    if "fingerprint" not in entry:
        raise ConfigError(f"{where}: missing 'fingerprint' (SHA-256 of the certificate, printed by 'cipherome keys init')")
    try:
        fp = normalise_fingerprint(entry["fingerprint"])
        pem = _cert_of(entry, base, where)
        actual = fingerprint_pem(pem)
    except TLSError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if actual != fp:
        raise ConfigError(
            f"{where}: the certificate's fingerprint is {actual}, not the listed {fp}; "
            "check with the party which certificate is current"
        )
    return fp, pem


def _required_name(table: dict, keys: tuple[str, ...], where: str) -> str:
    """Check that ``table`` has every one of ``keys``; return its party name, checked."""
    for k in keys:
        if k not in table:
            raise ConfigError(f"{where}: missing '{k}'")
    try:
        return check_name(str(table["name"]))
    except TLSError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_study(path: str | Path) -> Study:
    """Parse and validate a study file; ``ConfigError`` names the file and the entry at fault."""
    path = Path(path).expanduser().resolve()
    doc = _read_toml(path, "study file")
    head = doc.get("study")
    if not isinstance(head, dict) or "id" not in head:
        raise ConfigError(f"{path}: missing [study] table with an 'id'")
    sid = str(head["id"])
    if not _ID_RE.match(sid):
        raise ConfigError(f"{path}: invalid study id {sid!r} (letters, digits, '.', '_', '-'; at most 64)")
    try:
        timeout = float(head.get("round_timeout", DEFAULT_ROUND_TIMEOUT))
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: round_timeout must be a number of seconds") from None
    if not 0 < timeout <= 86400:
        raise ConfigError(f"{path}: round_timeout must be between 0 and 86400 seconds")
    workloads = head.get("workloads", [])
    if not isinstance(workloads, list) or not all(isinstance(w, str) for w in workloads):
        raise ConfigError(f"{path}: [study] workloads must be a list of names, e.g. [\"gwas\", \"bench\"]")
    base = path.parent
    parties: list[StudyParty] = []
    for i, e in enumerate(doc.get("party", [])):
        where = f"{path}: [[party]] #{i + 1}"
        if not isinstance(e, dict):
            raise ConfigError(f"{where}: must be a table")
        name = _required_name(e, ("name", "role", "address"), where)
        where = f"{path}: party {name!r}"
        if e["role"] not in ("site", "dealer"):
            raise ConfigError(f"{where}: role must be 'site' or 'dealer', not {e['role']!r}")
        if not _ADDR_RE.match(str(e["address"])):
            raise ConfigError(f"{where}: address must be host:port, not {e['address']!r}")
        fp, pem = _checked_cert(e, base, where)
        parties.append(StudyParty(name, e["role"], str(e["address"]), fp, pem))
    names = [p.name for p in parties]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{path}: party names must be unique; repeated: {', '.join(sorted(dup))}")
    fps = [p.fingerprint for p in parties]
    if len(set(fps)) != len(fps):
        raise ConfigError(f"{path}: two parties list the same certificate; every party needs its own key")
    if sum(p.role == "site" for p in parties) < 2:
        raise ConfigError(f"{path}: a study needs at least two parties with role = \"site\"")
    if sum(p.role == "dealer" for p in parties) != 1:
        raise ConfigError(f"{path}: a study needs exactly one party with role = \"dealer\"")
    submitters: list[Submitter] = []
    for i, e in enumerate(doc.get("submitter", [])):
        where = f"{path}: [[submitter]] #{i + 1}"
        if not isinstance(e, dict) or "name" not in e:
            raise ConfigError(f"{where}: missing 'name'")
        fp, pem = _checked_cert(e, base, where)
        role = str(e.get("role", "submitter"))
        if role not in ("submitter", "admin"):
            raise ConfigError(f"{where}: role must be 'submitter' (its own jobs) or 'admin' (every job of the "
                              f"study), not {role!r}")
        submitters.append(Submitter(str(e["name"]), fp, pem, role))
    return Study(sid, parties, submitters, list(workloads), timeout, path)


def load_site_config(path: str | Path) -> SiteConfig:
    """Parse and validate a site config and the study files it approves.

    Checks that the site's key and certificate belong together and that every
    approved study lists this site under its name with this certificate.
    """
    from .tls import load_identity

    path = Path(path).expanduser().resolve()
    doc = _read_toml(path, "site config")
    base = path.parent
    head = doc.get("party")
    if not isinstance(head, dict):
        raise ConfigError(f"{path}: missing [party] table (name, key, cert, listen, studies)")
    name = _required_name(head, ("name", "key", "cert", "listen", "studies"), f"{path}: [party]")

    def rel(p) -> Path:
        p = Path(str(p)).expanduser()
        return p if p.is_absolute() else base / p

    key_path, cert_path = rel(head["key"]), rel(head["cert"])
    try:
        ident = load_identity(name, key_path, cert_path)
    except TLSError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not _ADDR_RE.match(str(head["listen"])):
        raise ConfigError(f"{path}: listen must be host:port, e.g. \"0.0.0.0:7300\", not {head['listen']!r}")
    if not isinstance(head["studies"], list):
        raise ConfigError(f"{path}: studies must be a list of study file paths")
    studies: dict[str, Study] = {}
    for sp in head["studies"]:
        st = load_study(rel(sp))
        if st.id in studies:
            raise ConfigError(f"{path}: two approved study files have the id {st.id!r}")
        me = st.party(name)
        if me is None:
            raise ConfigError(f"{st.path}: study {st.id!r} has no party named {name!r} (the name in {path})")
        if me.fingerprint != ident.fingerprint:
            raise ConfigError(
                f"{st.path}: study {st.id!r} lists {name!r} with fingerprint {me.fingerprint}, but {cert_path} "
                f"has {ident.fingerprint}; send the study owner your current fingerprint"
            )
        studies[st.id] = st
    data = doc.get("data", {})
    policy = doc.get("policy", {})
    if not isinstance(data, dict) or not isinstance(policy, dict):
        raise ConfigError(f"{path}: [data] and [policy] must be tables")
    wl = policy.get("workloads", [])
    if not isinstance(wl, list) or not all(isinstance(w, str) for w in wl):
        raise ConfigError(f"{path}: [policy] workloads must be a list of names, e.g. [\"gwas\", \"bench\"]")
    for key in ("max_concurrent_jobs", "max_message_mb", "keep_results_mb", "keep_results_hours", "keep_jobs"):
        if key in policy and not (isinstance(policy[key], (int, float)) and policy[key] > 0):
            raise ConfigError(f"{path}: [policy] {key} must be a positive number")
    plugins = head.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(m, str) for m in plugins):
        raise ConfigError(f"{path}: plugins must be a list of module names")
    log = rel(head["log"]) if head.get("log") else None
    return SiteConfig(name, key_path, cert_path, str(head["listen"]), studies, data, policy, log, plugins, path)


# ----------------------------------------------------------------------------- writing
def _q(s) -> str:
    return json.dumps(str(s))  # a JSON string is a valid TOML basic string


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_q(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return _q(v)


def study_toml(study_id: str, parties: list[dict], submitters: list[dict], workloads: list[str],
               round_timeout: float = DEFAULT_ROUND_TIMEOUT) -> str:
    """Text of a study file; ``parties``/``submitters`` are dicts with the keys documented above."""
    lines = ["[study]", f"id = {_q(study_id)}", f"round_timeout = {float(round_timeout)!r}",
             f"workloads = {_toml_value(list(workloads))}", ""]
    for p in parties:
        lines += ["[[party]]"] + [f"{k} = {_toml_value(v)}" for k, v in p.items()] + [""]
    for s in submitters:
        lines += ["[[submitter]]"] + [f"{k} = {_toml_value(v)}" for k, v in s.items()] + [""]
    return "\n".join(lines)


def site_toml(party: dict, data: dict | None = None, policy: dict | None = None) -> str:
    """Text of a site config from its ``[party]``, ``[data]`` and ``[policy]`` tables."""
    lines = ["[party]"] + [f"{k} = {_toml_value(v)}" for k, v in party.items()] + [""]
    for name, table in (("data", data or {}), ("policy", policy or {})):
        lines.append(f"[{name}]")
        lines += [f"{_q(k)} = {_toml_value(v)}" for k, v in table.items()]
        lines.append("")
    return "\n".join(lines)

