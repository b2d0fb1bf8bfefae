"""Seeds from the post-implant CT (brachymc.seedfinder) on simulated CTs with known seeds.

The simulated CTs come from brachymc.examples.postimplant_ct (forward projection, Poisson noise,
water beam-hardening correction, filtered back-projection; true-size 6711 seeds): CI-sized
fields of view around the implant, 1 mm and 5 mm slices, touching pairs, end-to-end chains and
3-seed clumps. The analytic phantom below (blurred seed images in a water cylinder) is for the
fast properties and the bad-input paths.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from brachymc.examples.postimplant_ct import Implant, ScanSettings, Screw, make_implant, simulate_postimplant_ct
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry
from brachymc.io.volume import write_ct_volume
from brachymc.seedfinder import FinderSettings, NoMetalError, find_seeds, score_seeds
from brachymc.seedfinder.appearance import seeds_image
from brachymc.seedfinder.output import CSV_COLUMNS


def _run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "brachymc", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


# ----------------------------------------------------------------------------------------------
# simulated post-implant CTs

@pytest.fixture(scope="module")
def sim_1mm():
    implant = make_implant(24, np.random.default_rng(3), pairs=2, chains=1, clumps=1)
    scan = ScanSettings(slice_mm=1.0, pixel_mm=0.8, recon_center_mm=(10.0, 30.0), recon_fov_mm=(90.0, 70.0),
                        z_range_mm=(-15.0, 15.0), seed=3)
    sim = simulate_postimplant_ct(implant, scan, keep_anatomy=True)
    return sim, find_seeds(sim.ct)


@pytest.fixture(scope="module")
def sim_5mm():
    implant = make_implant(20, np.random.default_rng(103), pairs=1, chains=1, clumps=1)
    scan = ScanSettings(slice_mm=5.0, pixel_mm=0.8, recon_center_mm=(10.0, 30.0), recon_fov_mm=(90.0, 70.0),
                        z_range_mm=(-15.0, 15.0), seed=103)
    sim = simulate_postimplant_ct(implant, scan)
    return sim, find_seeds(sim.ct)


def _clusters(implant: Implant) -> set:
    return set(implant.labels)


def test_simulated_ct_has_clusters_and_real_artefacts(sim_1mm):
    sim, _ = sim_1mm
    assert {"pair", "chain", "clump"} <= _clusters(sim.implant)
    hu = sim.ct.hu
    assert hu.max() == 3071.0                               # 12-bit scale saturates on the seeds
    assert 10.0 < sim.notes["noise_hu"] < 60.0             # Poisson noise after FBP
    assert hu.min() < -300.0                                # dark streaks (photon starvation, beam hardening)


def test_background_fill_against_the_metal_free_image(sim_1mm):
    """The simulator's metal-free, noiseless image is the CT's truth away from the metal (the CT
    differs by its noise only), and the finder's background fill under the seeds of 1 mm slices
    is within half a seed of it in every component (measured: mean -0.11, sd 0.09, worst -0.30
    seed, a 4-seed cluster)."""
    from brachymc.examples.seed_validation import background_error

    sim, _ = sim_1mm
    far = np.asarray(sim.ct.hu)[:, :10, :10] - sim.anatomy_hu[:, :10, :10]
    assert abs(float(far.mean())) < 3.0
    assert float(far.std()) == pytest.approx(sim.notes["noise_hu"], rel=0.25)
    b = background_error(sim)
    assert b["n_components"] >= 10
    assert b["over_half_seed"] == 0 and abs(b["mean"]) < 0.2 and b["sd"] < 0.2


def test_1mm_slices_with_clusters(sim_1mm):
    sim, res = sim_1mm
    sc = score_seeds(sim.seeds_mm, sim.directions, res.positions_mm(), res.directions())
    assert sc.detection_rate >= 0.99, res.summary()
    assert sc.false_positive_rate <= 0.01, res.summary()              # the target (none found here)
    assert sc.rms_inplane_mm <= 0.5 and sc.rms_axial_mm <= 1.0
    assert sc.axis_median_deg <= 10.0
    assert res.clusters_split() >= 3                        # the pairs, the chain and the clump were split
    # every found seed is the model's: confidences in [0, 1], axes unit vectors with dz >= 0
    d = res.directions()
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0) and np.all(d[:, 2] >= -1e-12)
    assert np.all((res.confidences() >= 0) & (res.confidences() <= 1))


def test_5mm_slices_with_clusters(sim_5mm):
    """5 mm slices: seeds lying in a slice blur into it (z known to the slice's flat top)."""
    sim, res = sim_5mm
    sc = score_seeds(sim.seeds_mm, sim.directions, res.positions_mm(), res.directions())
    # On this small case all 20 seeds are found (one false positive), axial RMS 0.92 mm; over the
    # larger 5 mm validation scans the targets (>= 97 % found, axial RMS <= 1 mm) are NOT
    # reached yet (docs/validation/seed_finding.md). The detection bound allows one missed seed.
    assert sc.detection_rate >= 0.95, res.summary()
    assert sc.false_positive_rate <= 0.1, res.summary()
    assert sc.rms_inplane_mm <= 0.5
    assert sc.rms_axial_mm <= 1.0


def test_same_ct_same_seeds_whatever_the_heap_holds(sim_5mm, tmp_path):
    """Two runs on the same CT give the same seeds bit for bit, also when malloc hands out memory
    filled with different bytes (MALLOC_PERTURB_) and with one or two BLAS threads: nothing the
    finder computes may depend on memory no one wrote (SciPy's MINPACK did; docs/seed_finding.md)."""
    import os

    sim, res = sim_5mm
    ct_file = write_ct_volume(tmp_path / "ct5.h5", sim.ct)
    outs = []
    for perturb, threads in (("7", "2"), ("200", "1")):
        out = tmp_path / f"seeds_{perturb}.csv"
        env = {**os.environ, "MALLOC_PERTURB_": perturb, "OPENBLAS_NUM_THREADS": threads}
        p = subprocess.run([sys.executable, "-m", "brachymc", "seeds", "find", str(ct_file), "--out", str(out)],
                           capture_output=True, text=True, timeout=600, env=env)
        assert p.returncode == 0, p.stderr
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    # and the same as the in-process run of the fixture (positions written to 0.001 mm)
    found = np.loadtxt(io.StringIO(outs[0]), delimiter=",", skiprows=1, ndmin=2)
    np.testing.assert_allclose(found[:, :3], res.positions_mm(), atol=6e-4)


def test_pedicle_screw_is_not_a_seed():
    """A titanium pedicle screw beside the seeds is reported as other metal and gives no seed."""
    implant = make_implant(8, np.random.default_rng(5), pairs=0, chains=0, clumps=0, screw=True)
    scan = ScanSettings(slice_mm=2.5, pixel_mm=0.8, recon_center_mm=(0.0, 35.0), recon_fov_mm=(90.0, 70.0),
                        z_range_mm=(-15.0, 15.0), seed=5)
    sim = simulate_postimplant_ct(implant, scan)
    res = find_seeds(sim.ct)
    screw = implant.screw
    assert isinstance(screw, Screw)
    near = screw.distance_mm(res.positions_mm()) < screw.diameter_mm / 2 + 2.0
    assert not near.any(), res.summary()
    assert len(res.other_metal) >= 1
    assert any(screw.distance_mm(np.array([m.centroid_mm]))[0] < 10.0 for m in res.other_metal)
    sc = score_seeds(implant.seeds_mm, implant.directions, res.positions_mm(), res.directions())
    assert sc.n_matched == implant.n_seeds and sc.false_positive_rate <= 0.15, res.summary()


# ----------------------------------------------------------------------------------------------
# an analytic phantom: blurred seed images in a water cylinder

def _phantom(seeds_mm, dirs, voxel=(0.8, 0.8, 1.0), shape=(28, 60, 60), noise=15.0, seed=0, center=(0.0, 0.0, 0.0),
             clip=3071.0) -> CTVolume:
    nz, ny, nx = shape
    dx, dy, dz = voxel
    origin = (center[0] - nx * dx / 2, center[1] - ny * dy / 2, center[2] - nz * dz / 2)
    g = GridGeometry(shape=shape, spacing=(dx / 10, dy / 10, dz / 10), origin=tuple(o / 10 for o in origin))
    zc, yc, xc = (origin[2] + (np.arange(nz) + 0.5) * dz, origin[1] + (np.arange(ny) + 0.5) * dy,
                  origin[0] + (np.arange(nx) + 0.5) * dx)
    Z, Y, X = np.meshgrid(zc, yc, xc, indexing="ij")
    body = ((X - center[0]) ** 2 + (Y - center[1]) ** 2) <= (0.42 * nx * dx) ** 2
    hu = np.where(body, 40.0, -1000.0)
    pts = np.column_stack([X.ravel(), Y.ravel(), Z.ravel()])
    if len(seeds_mm):
        img = seeds_image(pts, np.asarray(seeds_mm, float), np.asarray(dirs, float), np.full(len(seeds_mm), 12000.0),
                          3.0, np.array([0.5, 0.5, 0.45]), 0.0, None)
        hu = hu + img.reshape(hu.shape)
    hu = hu + np.random.default_rng(seed).normal(0.0, noise, hu.shape)
    return CTVolume(hu=np.clip(hu, -1024, clip).astype(np.float32), geometry=g, source="analytic phantom")


_SEEDS = np.array([[-8.0, -6.0, -3.0], [6.0, -7.0, 2.0], [-5.0, 8.0, 4.0], [9.0, 6.0, -4.0], [0.5, 0.0, 0.0],
                   [-0.5, 0.2, 0.0], [-10.0, 1.0, 5.0]])
_DIRS = np.array([[1.0, 0.3, 0.2], [0.1, 1.0, 0.3], [0.3, 0.2, 1.0], [0.7, -0.7, 0.1], [0.0, 1.0, 0.05],
                  [0.0, 1.0, 0.05], [0.2, 0.9, -0.4]])
_DIRS = _DIRS / np.linalg.norm(_DIRS, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def phantom():
    ct = _phantom(_SEEDS, _DIRS)
    return ct, find_seeds(ct)


def test_analytic_phantom_found(phantom):
    ct, res = phantom
    sc = score_seeds(_SEEDS, _DIRS, res.positions_mm(), res.directions())
    assert sc.n_matched == len(_SEEDS) and res.n_seeds == len(_SEEDS), res.summary()
    assert sc.rms_3d_mm < 0.25 and sc.axis_median_deg < 5.0
    assert res.clusters_split() == 1                        # the touching pair at the centre


def test_fits_run_blas_on_one_thread(phantom, monkeypatch):
    """find_seeds' fits are small least-squares problems: BLAS runs on one thread inside, and as
    many as before outside: the same CT gives the same seeds whatever the machine's core count
    (OpenBLAS' threads sum in another order; docs/seed_finding.md, repeatability)."""
    from threadpoolctl import threadpool_info

    from brachymc.seedfinder import finder

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    before = blas_threads()
    seen = []
    real = finder._find_seeds
    monkeypatch.setattr(finder, "_find_seeds", lambda *a: (seen.append(blas_threads()), real(*a))[1])
    ct, res = phantom
    again = find_seeds(ct)
    assert seen and seen[0] and all(n == 1 for n in seen[0])
    assert blas_threads() == before
    np.testing.assert_array_equal(again.positions_mm(), res.positions_mm())



def test_compiled_and_scipy_fits_find_the_same_seeds(phantom):
    """The finder's default compiled fit loop and the SciPy reference (FinderSettings.fit_solver)
    give the same seeds on the analytic phantom, the touching pair split alike."""
    ct, res = phantom
    ref = find_seeds(ct, settings=FinderSettings(fit_solver="scipy"))
    assert ref.n_seeds == res.n_seeds and ref.clusters_split() == res.clusters_split()
    np.testing.assert_allclose(res.positions_mm(), ref.positions_mm(), atol=1e-4)
    np.testing.assert_allclose(np.abs(np.sum(res.directions() * ref.directions(), axis=1)), 1.0, atol=1e-6)


def test_unknown_fit_solver_is_a_config_error(phantom):
    from brachymc.errors import ConfigError

    with pytest.raises(ConfigError, match="fit_solver"):
        find_seeds(phantom[0], settings=FinderSettings(fit_solver="lm"))
    with pytest.raises(ConfigError, match="workers"):
        find_seeds(phantom[0], settings=FinderSettings(workers=0))


def test_threads_do_not_change_the_seeds(sim_5mm):
    """The components are fitted on as many threads as FinderSettings.workers says (by default
    up to 2): one thread, two and three give the same seeds, clusters and scores bit for bit
    (each component draws its own random starts, whatever order the threads take them in)."""
    sim, res = sim_5mm
    for n in (1, 3):
        other = find_seeds(sim.ct, settings=FinderSettings(workers=n))
        np.testing.assert_array_equal(other.positions_mm(), res.positions_mm())
        np.testing.assert_array_equal(other.directions(), res.directions())
        np.testing.assert_array_equal(other.confidences(), res.confidences())
        assert other.clusters == res.clusters and other.diagnostics == res.diagnostics


def test_each_component_draws_its_own_random_stream():
    """A component's random starts come from the run seed and its own voxel values: not from
    where it lies, the order of its voxels, or what was drawn for other components."""
    from brachymc.seedfinder.finder import component_rng

    vals = np.random.default_rng(0).normal(2000.0, 500.0, 300)
    a = component_rng(vals, 0).random(5)
    np.testing.assert_array_equal(component_rng(vals[::-1], 0).random(5), a)
    np.testing.assert_array_equal(component_rng(vals + 1e-9, 0).random(5), a)       # stored to 0.01 HU
    assert not np.array_equal(component_rng(vals, 1).random(5), a)
    other = vals.copy()
    other[7] += 1.0
    assert not np.array_equal(component_rng(other, 0).random(5), a)

def _rot90_z(ct: CTVolume) -> CTVolume:
    """The CT rotated by +90 deg about the z axis: a voxel at (x, y, z) moves to (-y, x, z)."""
    g = ct.geometry
    hu = np.ascontiguousarray(np.flip(np.asarray(ct.hu).transpose(0, 2, 1), axis=2))
    dx, dy, dz = g.spacing
    ox, oy, oz = g.origin
    ng = GridGeometry(shape=hu.shape, spacing=(dy, dx, dz), origin=(-oy - g.ny * dy, ox, oz))
    return CTVolume(hu=hu, geometry=ng, source="rotated")


def _line_close(a: np.ndarray, b: np.ndarray, tol_deg: float) -> bool:
    return bool(np.degrees(np.arccos(min(1.0, abs(float(a @ b))))) <= tol_deg)


@settings(max_examples=6, deadline=None)
@given(shift=st.tuples(st.integers(-6, 6), st.integers(-6, 6), st.integers(-3, 3)),
       offset=st.tuples(st.floats(-300, 300), st.floats(-300, 300), st.floats(-300, 300)),
       quarter_turns=st.integers(0, 3))
def test_found_seeds_move_with_the_ct(phantom, shift, offset, quarter_turns):
    """Translating (content by whole voxels, origin by any amount) and rotating the CT volume by
    quarter turns about z moves the found seeds and their axes with it."""
    ct, res = phantom
    g = ct.geometry
    hu = np.asarray(ct.hu)
    s = np.array(shift)
    pad = ((3, 3), (6, 6), (6, 6))
    big = np.pad(hu, pad, mode="edge")
    moved = big[3 - s[2]:3 - s[2] + g.nz, 6 - s[1]:6 - s[1] + g.ny, 6 - s[0]:6 - s[0] + g.nx]
    vox = np.array(g.spacing) * 10
    origin = np.array(g.origin) + np.array(offset) / 10
    ct2 = CTVolume(hu=np.ascontiguousarray(moved), geometry=GridGeometry(g.shape, g.spacing, tuple(origin)), source="moved")
    expected = res.positions_mm() + s * vox + np.array(offset)
    exp_dirs = res.directions()
    for _ in range(quarter_turns):
        ct2 = _rot90_z(ct2)
        expected = np.column_stack([-expected[:, 1], expected[:, 0], expected[:, 2]])
        exp_dirs = np.column_stack([-exp_dirs[:, 1], exp_dirs[:, 0], exp_dirs[:, 2]])
    res2 = find_seeds(ct2)
    assert res2.n_seeds == res.n_seeds
    got = res2.positions_mm()
    for p, u in zip(expected, exp_dirs):
        d = np.linalg.norm(got - p, axis=1)
        j = int(np.argmin(d))
        assert d[j] < 0.05, (p, got[j])
        assert _line_close(res2.directions()[j], u, 1.0)


# ----------------------------------------------------------------------------------------------
# command line: outputs, bad and odd input

@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory, phantom):
    ct, _ = phantom
    return write_ct_volume(tmp_path_factory.mktemp("ph") / "ct.h5", ct)


def test_cli_csv_toml_and_qa(phantom_file, tmp_path):
    out = tmp_path / "seeds.csv"
    qa = tmp_path / "qa.png"
    p = _run_cli("seeds", "find", phantom_file, "--out", out, "--qa", qa)
    assert p.returncode == 0, p.stderr
    assert "7 seeds found" in p.stdout and "1 clusters split into 2 seeds" in p.stdout
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and len(lines) == 8
    assert qa.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    toml = tmp_path / "plan.toml"
    p = _run_cli("seeds", "find", phantom_file, "--out", toml, "--activity-mCi", 0.7)
    assert p.returncode == 0, p.stderr
    from brachymc.sources.plan import read_plan_toml

    plan = read_plan_toml(toml)
    assert plan.n_seeds == 7 and plan.orientation == "given"
    assert plan.sk_U == pytest.approx(0.7 * 1.270, rel=1e-3)


def test_cli_no_metal(tmp_path):
    path = write_ct_volume(tmp_path / "plain.h5", _phantom([], []))
    out = tmp_path / "seeds.csv"
    p = _run_cli("seeds", "find", path, "--out", out)
    assert p.returncode == 2
    assert "brachymc: error:" in p.stderr and "no metal found" in p.stderr and "plain.h5" in p.stderr
    assert not out.exists() and not list(tmp_path.glob(".seeds.csv*"))


def test_cli_bad_output_and_missing_strength(phantom_file, tmp_path):
    p = _run_cli("seeds", "find", phantom_file, "--out", tmp_path / "seeds.txt")
    assert p.returncode == 2 and "--out must end in .csv, .toml or .dcm" in p.stderr
    p = _run_cli("seeds", "find", phantom_file, "--out", tmp_path / "plan.dcm")
    assert p.returncode == 2 and "--sk-U or --activity-mCi" in p.stderr
    assert not (tmp_path / "plan.dcm").exists()


def test_far_more_candidates_than_expected_are_flagged_not_dropped(phantom):
    ct, res0 = phantom
    res = find_seeds(ct, expected=4)
    assert res.n_seeds == res0.n_seeds == 7                 # nothing dropped
    doubtful = res.doubtful()
    assert len(doubtful) == 3
    assert all("beyond the expected 4" in " ".join(res.seeds[i].doubtful) for i in doubtful)
    assert "3 doubtful seed(s)" in res.summary()


def test_seed_outside_the_body_is_doubtful():
    seeds = np.vstack([_SEEDS[:3], [[-17.0, -17.0, 0.0]]])  # the last one lies in the air beside the body
    dirs = np.vstack([_DIRS[:3], [[1.0, 0.0, 0.0]]])
    res = find_seeds(_phantom(seeds, dirs))
    assert res.n_seeds == 4
    out = [i for i, s in enumerate(res.seeds) if any("outside the body" in d for d in s.doubtful)]
    assert len(out) == 1
    assert np.linalg.norm(np.array(res.seeds[out[0]].position_mm) - seeds[3]) < 0.5


def test_extended_hu_scale(tmp_path):
    """Without saturation (extended-HU reconstruction) the same seeds are found."""
    res = find_seeds(_phantom(_SEEDS, _DIRS, clip=64511.0))
    assert res.levels.clip_hu is None
    sc = score_seeds(_SEEDS, _DIRS, res.positions_mm(), res.directions())
    assert sc.n_matched == len(_SEEDS) and res.n_seeds == len(_SEEDS)


def _dicom_without_rescale(folder: Path, ct: CTVolume, signed: bool) -> None:
    import pydicom

    from brachymc.io.dicom_ct import write_ct_series

    for p in write_ct_series(folder, ct):
        ds = pydicom.dcmread(p)
        del ds.RescaleSlope
        del ds.RescaleIntercept
        if signed:
            px = (ds.pixel_array.astype(np.int32) - 1024).astype(np.int16)
            ds.PixelRepresentation = 1
            ds.PixelData = px.tobytes()
        ds.save_as(p)


def test_ct_without_rescale_tags(tmp_path):
    ct = _phantom(_SEEDS[:3], _DIRS[:3], shape=(16, 50, 50))
    unsigned = tmp_path / "unsigned"
    _dicom_without_rescale(unsigned, ct, signed=False)
    p = _run_cli("seeds", "find", unsigned, "--out", tmp_path / "a.csv")
    assert p.returncode == 2 and "RescaleSlope" in p.stderr and "CT_0001.dcm" in p.stderr
    signed = tmp_path / "signed"
    _dicom_without_rescale(signed, ct, signed=True)         # signed pixels without rescale are HU
    p = _run_cli("seeds", "find", signed, "--out", tmp_path / "b.csv")
    assert p.returncode == 0, p.stderr
    assert "3 seeds found" in p.stdout


# ----------------------------------------------------------------------------------------------
# round trip through an RT Plan, and the pipeline with [plan] file = "ct"

_RUN = """[ct]
dicom = "ct"
calculation_voxel_mm = [4.0, 4.0, 5.0]
crop_margin_mm = 30
[calibration]
artefact_radius_mm = 6
[plan]
file = "{plan}"
activity_mCi = 0.7
orientation = "auto"
[structures]
rtstruct = "rtstruct.dcm"
[dose]
prescription_gy = 110
[simulation]
histories = 8000
batch_histories = 4000
min_batches = 2
target_uncertainty = 0
backend = "numpy"
[tg43]
gamma = false
[output]
rtdose = false
threeddose = false
figures = false
report = false
"""


@pytest.fixture(scope="module")
def demo_case(tmp_path_factory):
    from brachymc.examples.demo import write_demo_case

    return write_demo_case(tmp_path_factory.mktemp("seeddemo") / "case", mode="ci").parent


def test_plan_from_ct_end_to_end_and_rtplan_round_trip(demo_case, tmp_path):
    import h5py

    (demo_case / "run_ct.toml").write_text(_RUN.format(plan="ct"))
    p = _run_cli("run", demo_case / "run_ct.toml", "--out", tmp_path / "out_ct", "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((tmp_path / "out_ct" / "summary.json").read_text())
    assert s["seeds_from"] == "found automatically in the CT"
    sf = s["seed_finding"]
    assert sf["n_seeds"] == s["n_seeds"] >= 10
    assert any("seeds found automatically in the CT" in n["message"] for n in s["notes"])
    with h5py.File(tmp_path / "out_ct" / "dose.h5") as f:
        pos_ct, dir_ct = f["seeds/positions_cm"][...], f["seeds/directions"][...]

    # the same seeds through `brachymc seeds find` -> RT Plan -> `brachymc run`
    rp = demo_case / "found.dcm"
    p = _run_cli("seeds", "find", demo_case / "ct", "--out", rp, "--activity-mCi", 0.7)
    assert p.returncode == 0, p.stderr
    (demo_case / "run_rp.toml").write_text(_RUN.format(plan="found.dcm"))
    p = _run_cli("run", demo_case / "run_rp.toml", "--out", tmp_path / "out_rp", "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    with h5py.File(tmp_path / "out_rp" / "dose.h5") as f:
        pos_rp, dir_rp = f["seeds/positions_cm"][...], f["seeds/directions"][...]
    assert pos_rp.shape == pos_ct.shape
    assert np.allclose(pos_rp, pos_ct, atol=1e-5)                      # DS strings keep 1e-4 mm
    assert np.allclose(np.abs(np.einsum("ij,ij->i", dir_rp, dir_ct)), 1.0, atol=1e-6)


def test_plan_from_ct_config_errors(tmp_path):
    from brachymc.errors import ConfigError
    from brachymc.pipeline.config import parse_run_config

    base = {"ct": {"volume": "ct.h5"}, "plan": {"file": "ct"}}
    with pytest.raises(ConfigError, match="strength"):
        parse_run_config(base, tmp_path, "run.toml")
    with pytest.raises(ConfigError, match="egsphant"):
        parse_run_config({"ct": {"egsphant": "x.egsphant"}, "plan": {"file": "ct", "sk_U": 1.0}}, tmp_path, "run.toml")
    with pytest.raises(ConfigError, match="expected"):
        parse_run_config({"ct": {"volume": "ct.h5"}, "plan": {"file": "p.csv", "expected": 3}}, tmp_path, "run.toml")
    cfg = parse_run_config({"ct": {"volume": "ct.h5"}, "plan": {"file": "ct", "sk_U": 0.9, "expected": 40}},
                           tmp_path, "run.toml")
    assert cfg.plan.from_ct and cfg.plan.expected == 40


def test_no_metal_raises():
    with pytest.raises(NoMetalError, match="no metal found"):
        find_seeds(_phantom([], []))


def test_validation_page_renders_from_its_results():
    """The committed validation results render to the page committed with them: one row per scan,
    the held-out scans in their own table, every held-out scan scored with and without the count."""
    import json
    from pathlib import Path

    from brachymc.examples.seed_validation import CASES, HELD_OUT, markdown

    root = Path(__file__).resolve().parents[1] / "docs" / "validation"
    results = json.loads((root / "seed_finding.json").read_text())
    page = markdown(results)
    assert page == (root / "seed_finding.md").read_text()
    assert [r["case"]["name"] for r in results["cases"]] == [c.name for c in CASES]
    assert [r["case"]["name"] for r in results["held_out"]] == [c.name for c in HELD_OUT]
    held = page.split("## Held-out scans")[1].split("## Against the targets")[0]
    rows = [line for line in held.splitlines() if line.startswith("| ") and line.split(" | ")[0][2:] in
            {c.name for c in HELD_OUT}]
    assert len(rows) == len(HELD_OUT)
    for r in results["held_out"]:
        assert 0.0 <= r["score"]["detection_rate"] <= 1.0 and "gtv_d90_diff_percent" in r["with_expected"]


def test_fewer_found_than_expected_adds_the_seed_the_split_score_favours(sim_5mm):
    """With the count given and one more seed than found, exactly one cluster gets one seed more:
    the one where the split's own score rises least (priors.apply_expected_count with the
    finder's one_more), and every other seed stays where it was, except that a seed whose capsule
    the grown cluster's seeds now touch is pushed apart by the overlap separation
    (priors.separate_overlaps: by less than a capsule diameter). On an AVX2 machine (stop 31) the
    added seed lies 2.1 mm from a seed of the neighbouring cluster, which moved 0.35 mm."""
    from brachymc.seedfinder.appearance import SeedAppearance
    from brachymc.geometry.seed import load_seed_model, seed_library

    sim, res0 = sim_5mm
    res = find_seeds(sim.ct, expected=res0.n_seeds + 1)
    assert res.n_seeds == res0.n_seeds + 1
    assert any("1 cluster(s) given one more seed" in n for n in res.notes)
    grown = [i for i, (a, b) in enumerate(zip(res0.clusters, res.clusters)) if b.n_seeds != a.n_seeds]
    assert len(grown) == 1 and res.clusters[grown[0]].n_seeds == res0.clusters[grown[0]].n_seeds + 1
    app = SeedAppearance.from_model(load_seed_model(seed_library()["oncoseed_6711"], None, check=False), (1, 1, 1))
    reach = app.capsule_length_mm + app.capsule_diameter_mm        # beyond this no capsule can touch
    grown_now = np.array([s.position_mm for s in res.seeds if s.cluster == grown[0]])
    kept = np.array([s.position_mm for s in res0.seeds if s.cluster != grown[0]])
    now = np.array([s.position_mm for s in res.seeds if s.cluster != grown[0]])
    touching = np.min(np.linalg.norm(now[:, None] - grown_now[None], axis=2), axis=1) < reach
    np.testing.assert_allclose(now[~touching], kept[~touching], atol=1e-9)
    assert np.all(np.linalg.norm(now[touching] - kept[touching], axis=1) < app.capsule_diameter_mm)


def test_validation_records_its_environment():
    """The validation run records the Python and library versions and the processor's vector
    instructions its counts came from (numba compiles the finder's kernels for the processor; the
    5 mm counts move by a seed per scan with either), and the page says which."""
    from importlib.metadata import version

    from brachymc.examples.seed_validation import _environment_line, environment

    env = environment()
    assert env["numpy"] == version("numpy") and env["scipy"] == version("scipy")
    line = _environment_line({"environment": env})[0]
    assert f"numpy {env['numpy']}" in line and f"Python {env['python']}" in line
    assert env["cpu_simd"] in (None, "avx512f", "avx2", "avx", "sse4_2") and (env["cpu_simd"] or "") in line
    assert _environment_line({}) == []
    # results written before the processor was recorded still render, without it
    old = {k: v for k, v in env.items() if k != "cpu_simd"}
    assert "None" not in _environment_line({"environment": old})[0]


def test_validation_page_says_whether_the_first_case_was_timed_warm():
    """The validation page's per-case finder times: with a warm-up recorded the page says each time is
    the finder's own; without one, that the first case includes the numba compilation."""
    import json
    from pathlib import Path

    from brachymc.examples.seed_validation import markdown

    results = json.loads((Path(__file__).parents[1] / "docs/validation/seed_finding.json").read_text())
    results.pop("warm_up_s", None)
    cold = markdown(results)
    assert "includes the one-off compilation" in cold
    results["warm_up_s"] = 7.1
    warm = markdown(results)
    assert "warm-up 7.1 s" in warm and "includes the one-off compilation" not in warm
