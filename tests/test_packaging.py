"""Fresh clones and installed wheels: the reference data ship with brachymc (configs/reference, each file with
its source header), and pyproject.toml declares every package and data folder (setuptools warns otherwise)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from brachymc._paths import config_dir, reference_dir

REPO = Path(__file__).resolve().parents[1]


def test_reference_data_ship_inside_the_repository(monkeypatch):
    monkeypatch.delenv("BRACHYMC_REFERENCE_DIR", raising=False)
    d = reference_dir()
    assert d == config_dir() / "reference" and d.is_dir()
    csvs = sorted(d.glob("*.csv"))
    names = {p.name for p in csvs}
    for need in ("tg43u1_6711_params.csv", "tg43u1_6711_gL.csv", "tg43u1_6711_F.csv", "tg43u1_2301_F.csv",
                 "nist_mu_muen.csv", "tissues_icru46.csv", "schneider2000_hu.csv", "schneider2000_density.csv",
                 "clrp_v2_lambda.csv", "i125_spectrum_tg43u1.csv"):
        assert need in names, need
    for p in csvs:                                  # every file keeps its source header
        head = [ln for ln in p.read_text().splitlines()[:8] if ln.startswith("#")]
        assert len(head) >= 2 and any(k in " ".join(head).lower() for k in ("source", "transcribed", "et al", "commit")), p.name
    assert (d / "README.md").is_file()
    monkeypatch.setenv("BRACHYMC_REFERENCE_DIR", "/somewhere/else")
    assert reference_dir() == Path("/somewhere/else")


def test_pyproject_declares_every_package_and_data_folder():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(cfg["packages"])
    code = {".".join(p.relative_to(REPO).parent.parts) for p in (REPO / "brachymc").rglob("__init__.py")}
    data = {"brachymc.configs." + ".".join(p.relative_to(REPO / "configs").parts)
            for p in (REPO / "configs").rglob("*") if p.is_dir() and "__pycache__" not in p.parts}
    assert code | data | {"brachymc.configs"} <= declared, sorted((code | data) - declared)
    pkg_data = cfg["package-data"]
    for pkg in data:
        folder = REPO / "configs" / Path(*pkg.split(".")[2:])
        suffixes = {p.suffix for p in folder.iterdir() if p.is_file()}
        patterns = {pat.lstrip("*") for pat in pkg_data.get(pkg, [])}
        assert suffixes <= patterns, (pkg, suffixes - patterns)
