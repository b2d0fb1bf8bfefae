"""EGSnrc interop: every medium of egs_brachy's material.dat resolves to exactly that medium, and
brachymc reads EGSnrc media files (egs++ material.dat, .egsinp media definitions) and
density-correction headers as they are.

The reference is tests/data/egs_brachy_material_dat.toml: the names, densities and compositions of
clrp-code/egs_brachy egs_brachy/lib/media/material.dat (commit cb9ed4b), transcribed as data (see
its header), with the compositions of the EGSnrc density-correction files that file names.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import numpy as np
import pytest
import xraylib

from brachymc.errors import MaterialError
from brachymc.materials import Material, MaterialLibrary, default_library, element_z
from brachymc.materials.egsnrc import read_density_file, read_egsnrc_media, shipped_density_headers

DATA = Path(__file__).parent / "data" / "egs_brachy_material_dat.toml"


def _fixture() -> list[dict]:
    with DATA.open("rb") as fh:
        return tomllib.load(fh)["medium"]


def _mass_fractions(m: dict) -> dict[int, float]:
    """Normalised mass fractions of a transcribed medium (as EGSnrc computes them)."""
    zs = [element_z(e) for e in m["elements"]]
    if "number_of_atoms" in m:
        w = [n * xraylib.AtomicWeight(z) for n, z in zip(m["number_of_atoms"], zs)]
    else:
        w = m["mass_fractions"]
    out: dict[int, float] = {}
    for z, x in zip(zs, w):
        out[z] = out.get(z, 0.0) + x / sum(w)
    return out


def _max_diff(a: dict[int, float], b: dict[int, float]) -> float:
    return max(abs(a.get(z, 0.0) - b.get(z, 0.0)) for z in set(a) | set(b))


MEDIA = _fixture()


def test_fixture_is_the_whole_file():
    names = [m["name"] for m in MEDIA]
    assert len(names) == len(set(names)) == 134
    assert sum(1 + len(m.get("repeated_at", [])) for m in MEDIA) == 149
    assert sum("density_correction_file" in m for m in MEDIA) == 26       # 29 lines, W, Ir, Ar repeated


@pytest.mark.parametrize("medium", MEDIA, ids=[m["name"] for m in MEDIA])
def test_every_egs_brachy_medium_resolves_to_exactly_that_medium(library, medium):
    """library[egs_brachy name] has the medium's composition within 0.001 (every element) and its density."""
    mat = library[medium["name"]]
    want = _mass_fractions(medium)
    assert _max_diff(dict(mat.mass_fractions), want) <= 1e-3, (mat.name, mat.composition_string())
    assert mat.density == pytest.approx(medium["rho"], rel=1e-3), mat.name


def test_composition_agreement_is_much_better_than_the_tolerance(library):
    worst = max(_max_diff(dict(library[m["name"]].mass_fractions), _mass_fractions(m)) for m in MEDIA)
    assert worst < 2e-5          # transcription digits; number-of-atoms media via xraylib's atomic weights


def test_spine_tissues_of_egsnrc_and_egs_brachy(library):
    sp = library["spongiosa_skeletal_icru_1986"]
    assert sp.name == "spongiosa_icru46" and sp.density == pytest.approx(1.18)
    hdr = shipped_density_headers()["spongiosa_skeletal_icru_1986"]
    assert _max_diff(dict(sp.mass_fractions), dict(hdr.mass_fractions)) < 1e-12
    assert dict(sp.mass_fractions)[20] == pytest.approx(0.074)
    for egs, name in (("RED_MARROW_WW86", "red_marrow"), ("YELLOW_MARROW_WW86", "yellow_marrow"),
                      ("redmarrow_skeletal_icru_1986", "red_marrow"), ("CALCIFICATION_ICRU46", "calcification_icru46"),
                      ("AgI_6.003", "agi_6_003"), ("cortical_bone_ww86", "cortical_bone")):
        assert library[egs].name == name, egs


def test_library_aliases_are_unambiguous(library):
    names_lower = {n.lower(): n for n in library}
    table = library.alias_table()
    for alias, target in table.items():
        other = names_lower.get(alias.lower())
        assert other in (None, target), (alias, target, other)      # no alias is another material's name


def _render_material_dat(folder: Path, media: list[dict], with_density_file: str | None = None) -> Path:
    """An egs++ media file written from the transcription (not a copy of egs_brachy's file)."""
    lines = ["# media written by the brachymc test suite from tests/data/egs_brachy_material_dat.toml", ""]
    for m in media:
        lines.append(f"medium = {m['name']}")
        if "density_correction_file" in m:
            lines.append(f"  density correction file = {m['density_correction_file']}   # header composition")
        else:
            lines.append(f"  rho = {m['rho']!r}")
            lines.append("  elements = " + ", ".join(e.upper() for e in m["elements"]) + ",")   # trailing comma
            key = "number of atoms" if "number_of_atoms" in m else "mass fractions"
            lines.append(f"  {key} = " + " , ".join(repr(v) for v in m.get("number_of_atoms", m.get("mass_fractions"))))
        lines.append("  bremsstrahlung correction = NRC")
        lines.append("")
    path = folder / "material.dat"
    path.write_text("\n".join(lines))
    return path


def test_reader_on_the_whole_egs_brachy_media_set(tmp_path, library):
    """brachymc's EGSnrc reader, on a media file holding all 134 media, gives the library's media."""
    path = _render_material_dat(tmp_path, MEDIA)
    mats = read_egsnrc_media(path)
    assert [m.name for m in mats] == [m["name"] for m in MEDIA]
    for m in mats:
        ref = library[m.name]
        assert _max_diff(dict(m.mass_fractions), dict(ref.mass_fractions)) < 2e-5, m.name
        assert m.density == pytest.approx(ref.density, rel=1e-6), m.name
        assert m.category == "egsnrc" and "material.dat:" in m.reference
    # loaded next to the library: the file's names win over the library aliases of the same media
    lib = default_library(egsnrc_files=[path])
    assert lib["RED_MARROW_WW86"].name == "RED_MARROW_WW86" and lib["red_marrow"].name == "red_marrow"


DENSITY_FILE = """\
  spongiosa_ skeletal _icru_ 1986 (test copy of the header layout)
         3   78.402000       1.1799999              12
  1 0.085000  6 0.404000  7 0.028000  8 0.367000 11 0.001000 12 0.001000
 15 0.034000 16 0.002000 17 0.002000 19 0.001000 20 0.074000 26 0.001000
 1.00E-03,0.000E+00  1.25E-03,0.000E+00  1.50E-03,0.000E+00
"""


def test_density_correction_headers(tmp_path, monkeypatch):
    d = tmp_path / "density_corrections" / "compounds"
    d.mkdir(parents=True)
    (d / "my_spongiosa.density").write_text(DENSITY_FILE)
    hdr = read_density_file(d / "my_spongiosa.density")
    assert hdr.density == pytest.approx(1.18) and hdr.mean_excitation_energy_ev == pytest.approx(78.402)
    assert dict(hdr.mass_fractions)[20] == pytest.approx(0.074) and len(hdr.mass_fractions) == 12
    # a .density file is itself a medium; a media file finds it by name beside it, with or without suffix
    (m,) = read_egsnrc_media(d / "my_spongiosa.density")
    assert m.name == "my_spongiosa" and m.density == pytest.approx(1.18)
    media = tmp_path / "media.dat"
    media.write_text("medium = SPONGIOSA_A\n density correction file = my_spongiosa\n"
                     "medium = SPONGIOSA_B\n density correction file = density_corrections/compounds/my_spongiosa.density\n"
                     "medium = TI_SHIPPED\n rho = 1.0\n elements = H\n density correction file = titanium\n")
    a, b, ti = read_egsnrc_media(media)
    assert a.mass_fractions == b.mass_fractions and a.density == b.density == pytest.approx(1.18)
    # the header overrides elements and rho (PIRS-701); without EGSnrc the shipped header is used
    assert ti.mass_fractions == ((22, 1.0),) and ti.density == pytest.approx(4.54)
    assert "density_headers.toml" in ti.reference
    # HEN_HOUSE is searched before the shipped headers
    hen = tmp_path / "HEN" / "pegs4" / "density_corrections" / "elements"
    hen.mkdir(parents=True)
    (hen / "titanium.density").write_text(" titanium test\n 1 233.0 4.5 1\n 22 1.0\n")
    monkeypatch.setenv("HEN_HOUSE", str(tmp_path / "HEN"))
    assert read_egsnrc_media(media)[2].density == pytest.approx(4.5)


def test_egsinp_media_definition_with_a_material_data_file(tmp_path):
    (tmp_path / "lib.dat").write_text(
        "medium = WATER_X\n rho = 1.0\n elements = H, O\n number of atoms = 2, 1\n"
        "medium = BONE_X\n rho = 1.85\n elements = H, O, CA\n mass fractions = 0.1, 0.5, 0.4\n")
    inp = tmp_path / "run.egsinp"
    inp.write_text("""
:start geometry definition:
    :start geometry:
        name = box
        medium = NOT_A_MEDIUM_DEFINITION
    :stop geometry:
:stop geometry definition:
:start media definition:
    AE = 0.512
    AP = 0.001
    material data file = lib.dat
    :start BONE_X:
        rho = 1.92                # overrides the material data file
    :stop BONE_X:
    :start TI_PURE:
        elements = Ti
        rho = 4.54
    :stop TI_PURE:
:stop media definition:
""")
    mats = {m.name: m for m in read_egsnrc_media(inp)}
    assert set(mats) == {"BONE_X", "TI_PURE", "WATER_X"}
    assert mats["BONE_X"].density == pytest.approx(1.92)
    assert dict(mats["BONE_X"].mass_fractions)[20] == pytest.approx(0.4)
    assert mats["TI_PURE"].mass_fractions == ((22, 1.0),)
    h2o = dict(mats["WATER_X"].mass_fractions)
    assert h2o[1] == pytest.approx(2 * xraylib.AtomicWeight(1) / (2 * xraylib.AtomicWeight(1) + xraylib.AtomicWeight(8)))


def test_egsnrc_semantics_first_definition_wins_and_fractions_are_normalised(tmp_path, caplog):
    f = tmp_path / "m.dat"
    f.write_text("# comment line\nmedium = A  # trailing comment\nrho = 2.0\nelements = C, O\n"
                 "mass fractions = 30, 10\nbremsstrahlung correction = NRC\n\n"
                 "medium = A\nrho = 3.0\nelements = C\n")
    with caplog.at_level(logging.WARNING):
        (a,) = read_egsnrc_media(f)
    assert a.density == 2.0 and dict(a.mass_fractions) == pytest.approx({6: 0.75, 8: 0.25})
    assert "defined again" in caplog.text
    assert "sum to 40" in a.description


@pytest.mark.parametrize("text, match", [
    ("medium = A\nrho = 1.0\nelements = H, O\nmass fractions = 0.5\n", r"m.dat:4: medium 'A': 1 mass fractions for 2"),
    ("medium = A\nelements = H\n", r"m.dat:1: medium 'A': no 'rho'"),
    ("medium = A\nrho = 1\nelements = H, Xq\nmass fractions = 0.5, 0.5\n", r"m.dat:3: medium 'A': elements: unknown"),
    ("medium = A\nrho = -1\nelements = H\n", r"m.dat:2: medium 'A': rho must be > 0"),
    ("medium = A\nrho = 1\nelements = H, O\n", r"2 elements need 'mass fractions' or 'number of atoms'"),
    ("medium = A\ndensity correction file = no_such_medium_xyz\n", r"m.dat:2: medium 'A': density correction file "
                                                                    r"'no_such_medium_xyz' not found"),
    ("medium = A\nrho = 1\nelements = H, O\nmass fractions = 0.5, x\n", r"m.dat:4: medium 'A': mass fractions: 'x'"),
    ("just text\n", r"no media found"),
])
def test_bad_media_files_name_file_line_medium_and_field(tmp_path, text, match):
    f = tmp_path / "m.dat"
    f.write_text(text)
    with pytest.raises(MaterialError, match=match):
        read_egsnrc_media(f)


def test_aliases_and_run_file_media(tmp_path, library):
    lib = library.with_aliases({"MY_BONE": "cortical_bone", "MY_MARROW": "RED_MARROW_WW86"})
    assert lib["my_bone"].name == "cortical_bone" and lib["MY_MARROW"].name == "red_marrow"
    with pytest.raises(MaterialError, match="'GHOST'.*not a library material or alias"):
        library.with_aliases({"X": "GHOST"})
    a = Material.from_composition("a", 1.0, {"H": 1.0}, aliases=("SAME",))
    b = Material.from_composition("b", 1.0, {"O": 1.0}, aliases=("same",))
    with pytest.raises(MaterialError, match="alias 'same' is claimed by both 'a' and 'b'"):
        MaterialLibrary({"a": a, "b": b})


def _egsphant(path: Path, names: list[str]) -> Path:
    nx = ny = nz = 2
    lines = [str(len(names)), *names, " ".join(["1.0"] * len(names)), f"{nx} {ny} {nz}",
             "-1 0 1", "-1 0 1", "-1 0 1"]
    for _ in range(nz):
        lines += ["12", "12", ""]
    for _ in range(nz):
        lines += ["1.0 1.9", "1.0 1.9", ""]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_patient_run_file_materials_and_media_aliases(tmp_path):
    """[materials] files / egsnrc and [ct] media_aliases: egsphant media named the egs_brachy way, a user's
    EGSnrc medium and an alias all resolve before anything runs; bad entries fail at load time."""
    from brachymc.errors import ConfigError
    from brachymc.pipeline.config import load_run_config, material_library
    from brachymc.pipeline.patient import load_inputs

    (tmp_path / "mine.dat").write_text("medium = MY_CEMENT\n rho = 1.2\n elements = C, H, O, BA\n"
                                       " mass fractions = 0.5, 0.07, 0.3, 0.13\n")
    (tmp_path / "mine.toml").write_text('[[material]]\nname = "my_gel"\ndensity = 1.01\n'
                                        'composition = { H = 0.11, O = 0.89 }\n')
    _egsphant(tmp_path / "ph.egsphant", ["WATER_0.998", "BONE_OF_CLINIC"])
    (tmp_path / "plan.csv").write_text("x_mm,y_mm,z_mm,sk_U\n0.0,0.0,0.0,0.5\n")
    run = tmp_path / "run.toml"

    def write(ct_extra: str = "", materials: str = 'files = ["mine.toml"]\negsnrc = ["mine.dat"]'):
        run.write_text(f'[ct]\negsphant = "ph.egsphant"\n{ct_extra}\n[plan]\nfile = "plan.csv"\n'
                       f'orientation = "axis"\n[materials]\n{materials}\n')
        return run

    cfg = load_run_config(write('media_aliases = { BONE_OF_CLINIC = "CORTICAL_BONE_WW86" }'))
    lib = material_library(cfg)
    assert lib["MY_CEMENT"].density == 1.2 and lib["my_gel"].density == 1.01
    inputs = load_inputs(cfg, lib)
    assert inputs.phantom_in.material_names() == ["water_0998", "cortical_bone"]
    np.testing.assert_allclose(np.unique(inputs.phantom_in.density), [1.0, 1.9])   # the file's densities
    with pytest.raises(ConfigError, match=r"\[ct\].media_aliases.*'NOPE'"):
        load_run_config(write('media_aliases = { BONE_OF_CLINIC = "NOPE" }'))
    with pytest.raises(ConfigError, match=r"\[materials\].egsnrc\[1\].*missing.dat does not exist"):
        load_run_config(write(materials='egsnrc = ["missing.dat"]'))
    (tmp_path / "bad.dat").write_text("medium = B\n rho = 1\n elements = H, O\n")
    with pytest.raises(ConfigError, match=r"\[materials\].*bad.dat:1: medium 'B'"):
        load_run_config(write(materials='egsnrc = ["bad.dat"]'))
