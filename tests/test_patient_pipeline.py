"""Patient pipeline: consistency with TG-43 in water, invariance under moving CT and seeds together,
resume after an interruption, and the bad-input contract (clear error, exit 2, no output files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brachymc.cli import main
from brachymc.geometry.ct import CTVolume
from brachymc.geometry.phantom import GridGeometry
from brachymc.io.volume import write_ct_volume
from brachymc.pipeline.config import load_run_config
from brachymc.pipeline.patient import run_patient
from brachymc.tg43.shipped import load_tg43_dataset
from brachymc.sources.strength import mean_life_hours
from brachymc.tg43.dose import dose_rate_at_points

WATER_CALIBRATION = """
name = "all_water"
reference = "test: every voxel water at 1.0 g/cm3"
[density]
hu = [-1000.0, 3000.0]
g_cm3 = [1.0, 1.0]
[[tissue]]
hu_min = -inf
hu_max = inf
material = "water"
"""


def _write_case(folder: Path, hu: np.ndarray, geom: GridGeometry, seeds_mm, dirs, sk_U=1.0, extra: str = "",
                calibration: str | None = None, sim: str = "", out_flags: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_ct_volume(folder / "ct.npz", CTVolume(hu.astype(np.float32), geom, frame_of_reference_uid="1.2.3"))
    rows = ["x_mm,y_mm,z_mm,dx,dy,dz,sk_U"] + [f"{p[0]},{p[1]},{p[2]},{d[0]},{d[1]},{d[2]},{sk_U}"
                                                 for p, d in zip(seeds_mm, dirs)]
    (folder / "plan.csv").write_text("\n".join(rows) + "\n")
    cal = "spine_default"
    if calibration is not None:
        (folder / "cal.toml").write_text(calibration)
        cal = "cal.toml"
    tu = "" if "target_uncertainty" in sim else "target_uncertainty = 0"
    outs = out_flags or "figures = false\nreport = false\nthreeddose = false"
    (folder / "run.toml").write_text(f"""
[ct]
volume = "ct.npz"
[calibration]
name = "{cal if calibration is None else str(folder / 'cal.toml')}"
artefact_radius_mm = 0
[plan]
file = "plan.csv"
orientation = "given"
[dose]
kind = "permanent"
[simulation]
backend = "numpy"
seed = 5
{tu}
{sim}
[tg43]
dataset = "brachymc"
gamma = false
[output]
{outs}
{extra}
""")
    return folder / "run.toml"


def test_water_ct_one_seed_matches_tg43(tmp_path):
    """A water CT with one 6711 seed gives the TG-43 dose of brachymc's own 6711 dataset within 3 % at
    0.5-5 cm (TG-43 averaged over each voxel with 3x3x3 Gauss points; 4 sigma statistical allowance)."""
    g = GridGeometry.centered((24, 24, 24), (0.3, 0.3, 0.3), center_cm=(1.0, -2.0, 3.0))
    seed = np.array([1.0, -2.0, 3.0])
    axis = np.array([0.0, 1.0, 1.0]) / np.sqrt(2)
    run = _write_case(tmp_path / "case", np.zeros(g.shape), g, [10 * seed], [axis], sk_U=1.0,
                      calibration=WATER_CALIBRATION,
                      sim="histories = 600_000\nbatch_histories = 60_000\nmin_batches = 10")
    res = run_patient(load_run_config(run), tmp_path / "out", progress=False, echo=lambda m: None)
    assert res.run.histories == 600_000
    assert [m.name for m in res.phantom.materials] == ["water"]
    ds = load_tg43_dataset("oncoseed_6711", "brachymc")
    tau = mean_life_hours()
    z, y, x = np.meshgrid(g.centers(2), g.centers(1), g.centers(0), indexing="ij")
    rel = np.stack([x, y, z], -1) - seed
    r = np.linalg.norm(rel, axis=-1)
    cos_t = (rel @ axis) / np.maximum(r, 1e-12)
    # the pipeline's own TG-43 output is the mean of 2 x 2 x 2 point doses in each voxel
    inside = r > 0.6
    pts = np.stack([x[inside], y[inside], z[inside]], 1)
    mean8 = np.mean([dose_rate_at_points(ds, seed[None], axis[None], np.array([1.0]),
                                         pts + np.array(g.spacing) * np.array([a, b, c]))
                     for a in (-0.25, 0.25) for b in (-0.25, 0.25) for c in (-0.25, 0.25)], axis=0)
    assert np.allclose(res.tg43_gy[inside], mean8 * 0.01 * tau, rtol=1e-10)
    gx, gw = np.polynomial.legendre.leggauss(3)
    for lo, hi in [(0.5, 0.8), (0.9, 1.2), (1.8, 2.2), (2.8, 3.2), (4.5, 5.0)]:
        sel = (r >= lo) & (r < hi) & (np.abs(cos_t) < np.cos(np.radians(30)))
        c = np.stack([x[sel], y[sel], z[sel]], 1)
        ref = 0.0
        for a, wa in zip(gx, gw):
            for b, wb in zip(gx, gw):
                for cc, wc in zip(gx, gw):
                    p = c + 0.5 * np.array(g.spacing) * np.array([a, b, cc])
                    ref += wa * wb * wc / 8 * dose_rate_at_points(ds, seed[None], axis[None], np.array([1.0]), p).sum()
        ref *= 0.01 * tau
        mc = res.dose_gy[sel].sum()
        sig = np.sqrt(np.sum(res.dose_unc_gy[sel] ** 2))     # voxels independent (an upper bound is not needed)
        assert abs(mc / ref - 1) < 0.03 + 4 * sig / mc, ((lo, hi), mc / ref, sig / mc)
    # absolute scale: 1 U for tau hours; D(1 cm, 90 deg) = Lambda x S_K x tau
    assert res.summary["sk_total_U_at_implant"] == pytest.approx(1.0)


def _bone_case(folder: Path, shift=np.zeros(3), rotate=False, sim="", extra=""):
    """Water with a cortical-bone block beside one seed; optionally translated or rotated 90 deg about z."""
    g0 = GridGeometry.centered((8, 8, 8), (0.4, 0.4, 0.4))
    g = GridGeometry(g0.shape, g0.spacing, tuple(np.array(g0.origin) + shift))
    z, y, x = np.meshgrid(g.centers(2), g.centers(1), g.centers(0), indexing="ij")
    xs, ys = x - shift[0], y - shift[1]
    if rotate:       # world = R(90 deg) body  ->  body = R^-1 world: (x, y) -> (y, -x)
        xs, ys = ys, -xs
    hu = np.where((xs > 0.8) & (xs < 2.4) & (np.abs(ys) < 2.8), 1400.0, 0.0)
    seed = np.array([0.2, 0.3, -0.1])
    axis = np.array([0.0, 0.0, 1.0])
    if rotate:
        seed = np.array([-seed[1], seed[0], seed[2]])
    run = _write_case(folder, hu, g, [10 * (seed + shift)], [axis], sim=sim or
                      "histories = 200_000\nbatch_histories = 20_000\nmin_batches = 10", extra=extra)
    return run


def test_moving_ct_and_seeds_together_moves_the_dose(tmp_path):
    base = run_patient(load_run_config(_bone_case(tmp_path / "a")), tmp_path / "oa", progress=False,
                       echo=lambda m: None)
    moved = run_patient(load_run_config(_bone_case(tmp_path / "b", shift=np.array([1.3, -2.1, 0.7]))),
                        tmp_path / "ob", progress=False, echo=lambda m: None)
    rot = run_patient(load_run_config(_bone_case(tmp_path / "c", rotate=True)), tmp_path / "oc", progress=False,
                      echo=lambda m: None)
    assert np.array_equal(base.phantom.material_index, moved.phantom.material_index)
    # translation: the dose moves with the patient (statistically: histories diverge after rounding)
    d0, d1 = base.dose_gy, moved.dose_gy
    z = np.abs(d0 - d1) / np.maximum(np.hypot(base.dose_unc_gy, moved.dose_unc_gy), 1e-300)
    scored = d0 > 0
    assert np.mean(z[scored] < 3) > 0.97, np.mean(z[scored] < 3)
    # rotation by 90 deg about z: voxel (iy, ix) of the base is voxel (ix, n-1-iy) of the rotated run
    n = base.geometry.nx
    iz, iy, ix = np.indices(base.geometry.shape)
    d_rot_back = rot.dose_gy[iz, ix, n - 1 - iy]
    u_rot_back = rot.dose_unc_gy[iz, ix, n - 1 - iy]
    assert np.array_equal(base.phantom.material_index, rot.phantom.material_index[iz, ix, n - 1 - iy])
    mats = base.phantom.material_index
    for other, unc in ((d1, moved.dose_unc_gy), (d_rot_back, u_rot_back)):
        for region in (mats == mats.max(), mats == 0):            # bone block, water
            a, b = d0[region].sum(), other[region].sum()
            sa = np.sqrt(np.sum(base.dose_unc_gy[region] ** 2))
            sb = np.sqrt(np.sum(unc[region] ** 2))
            assert abs(a - b) < 4 * np.hypot(sa, sb), (a, b, sa, sb)
    zr = np.abs(d0 - d_rot_back) / np.maximum(np.hypot(base.dose_unc_gy, u_rot_back), 1e-300)
    assert np.mean(zr[scored] < 3) > 0.97
    # and the bone block really matters: its dose per voxel differs from the mirrored water side
    assert d0[mats == mats.max()].mean() != pytest.approx(d0[:, :, ::-1][mats == mats.max()].mean(), rel=0.05)


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    sim = "histories = 60_000\nbatch_histories = 10_000\nmin_batches = 2\ncheckpoint_every_s = 0"
    run = _bone_case(tmp_path / "case", sim=sim)
    cfg = load_run_config(run)
    whole = run_patient(cfg, tmp_path / "whole", progress=False, echo=lambda m: None)

    def interrupt(b, res):
        if b == 2:
            raise KeyboardInterrupt

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run_patient(cfg, out, progress=False, echo=lambda m: None, on_batch=interrupt)
    assert (out / "checkpoint.h5").exists() and not (out / "dose.h5").exists()
    # a second start without --resume refuses to overwrite the checkpoint
    assert main(["run", str(run), "--out", str(out), "--no-progress"]) == 2
    assert main(["run", str(run), "--out", str(out), "--no-progress", "--resume"]) == 0
    import h5py

    with h5py.File(out / "dose.h5") as f:
        dose = f["dose"][...]
        summary = json.loads(f.attrs["summary"])
    assert summary["resumed_from_batches"] == 3 and summary["batches"] == 6
    assert np.array_equal(dose, whole.dose_gy)
    assert not (out / "checkpoint.h5").exists()


# ---------------------------------------------------------------------------------------------
# bad input: each a clear message naming the input, exit status 2 and no output files
def _expect_error(capsys, run: Path, out: Path, *needles: str) -> None:
    code = main(["run", str(run), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    for n in needles:
        assert n in err, (n, err)
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_seed_outside_ct(tmp_path, capsys):
    """A seed whose centre lies outside the CT is refused (a centre inside is padded for: test_inputs)."""
    g = GridGeometry.centered((4, 4, 4), (0.4, 0.4, 0.4))
    run = _write_case(tmp_path / "c", np.zeros(g.shape), g, [[0, 0, 0], [0, 0, 20.5]], [[0, 0, 1]] * 2)
    _expect_error(capsys, run, tmp_path / "out", "plan.csv", "outside the CT", "#2 at (0, 0, 20.5) mm")


def test_negative_strength(tmp_path, capsys):
    g = GridGeometry.centered((4, 4, 4), (0.4, 0.4, 0.4))
    run = _write_case(tmp_path / "c", np.zeros(g.shape), g, [[0, 0, 0]], [[0, 0, 1]], sk_U=-0.5)
    _expect_error(capsys, run, tmp_path / "out", "plan.csv", "strength")


def test_unknown_override_material(tmp_path, capsys):
    g = GridGeometry.centered((4, 4, 4), (0.4, 0.4, 0.4))
    run = _write_case(tmp_path / "c", np.zeros(g.shape), g, [[0, 0, 0]], [[0, 0, 1]],
                      extra='[[override]]\nroi = "GTV"\nmaterial = "unobtainium"\n')
    # without an RTSTRUCT the ROI is unknown: the message names the run file and the ROI
    _expect_error(capsys, run, tmp_path / "out", "run.toml", "GTV")


def test_unknown_calibration_material(tmp_path, capsys):
    g = GridGeometry.centered((4, 4, 4), (0.4, 0.4, 0.4))
    run = _write_case(tmp_path / "c", np.zeros(g.shape), g, [[0, 0, 0]], [[0, 0, 1]],
                      calibration=WATER_CALIBRATION.replace('material = "water"', 'material = "unobtainium"'))
    _expect_error(capsys, run, tmp_path / "out", "cal.toml", "unobtainium")


def test_impossible_settings(tmp_path, capsys):
    g = GridGeometry.centered((4, 4, 4), (0.4, 0.4, 0.4))
    run = _write_case(tmp_path / "c", np.zeros(g.shape), g, [[0, 0, 0]], [[0, 0, 1]],
                      sim="target_uncertainty = 2.5")
    _expect_error(capsys, run, tmp_path / "out", "run.toml", "target_uncertainty")


@pytest.fixture(scope="module")
def demo_case(tmp_path_factory):
    from brachymc.examples.demo import write_demo_case

    return write_demo_case(tmp_path_factory.mktemp("spine") / "case", mode="ci").parent


def _copy_case(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst / "run.toml"


def test_corrupt_dicom_slice(demo_case, tmp_path, capsys):
    run = _copy_case(demo_case, tmp_path / "case")
    victim = sorted((tmp_path / "case" / "ct").glob("CT_*.dcm"))[5]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])              # truncated in the pixel data
    _expect_error(capsys, run, tmp_path / "out", victim.name)


def test_missing_ct_slice(demo_case, tmp_path, capsys):
    run = _copy_case(demo_case, tmp_path / "case")
    sorted((tmp_path / "case" / "ct").glob("CT_*.dcm"))[7].unlink()
    _expect_error(capsys, run, tmp_path / "out", "ct", "spacing")


def test_rtstruct_of_another_frame_of_reference(demo_case, tmp_path, capsys):
    import pydicom

    run = _copy_case(demo_case, tmp_path / "case")
    p = tmp_path / "case" / "rtstruct.dcm"
    ds = pydicom.dcmread(p)
    other = "1.2.826.0.1.3680043.8.498.999"
    ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = other
    for roi in ds.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = other
    ds.save_as(p)
    _expect_error(capsys, run, tmp_path / "out", "rtstruct.dcm", other)


def test_egsphant_input(tmp_path, library):
    """An EGSnrc phantom runs without HU conversion and gives the same dose as the equivalent CT."""
    from brachymc.geometry.phantom import VoxelPhantom
    from brachymc.io.egsnrc import write_egsphant

    g = GridGeometry.centered((4, 4, 4), (0.4, 0.4, 0.4))
    run = _write_case(tmp_path / "c", np.zeros(g.shape), g, [[0, 0, 0]], [[0, 0, 1]],
                      calibration=WATER_CALIBRATION, sim="histories = 20_000\nbatch_histories = 10_000\nmin_batches = 2")
    a = run_patient(load_run_config(run), tmp_path / "oa", progress=False, echo=lambda m: None)
    write_egsphant(tmp_path / "c" / "water.egsphant", VoxelPhantom.homogeneous(g, library["water"], 1.0))
    text = (tmp_path / "c" / "run.toml").read_text().replace('volume = "ct.npz"', 'egsphant = "water.egsphant"')
    (tmp_path / "c" / "run2.toml").write_text(text)
    b = run_patient(load_run_config(tmp_path / "c" / "run2.toml"), tmp_path / "ob", progress=False,
                    echo=lambda m: None)
    assert b.summary["calibration"] == "egsphant media"
    assert np.array_equal(a.dose_gy, b.dose_gy)


def test_dose_kinds_scale_consistently(tmp_path):
    """Same histories: total dose = initial rate x tau; a 0..t window -> total as t -> inf; rate decays."""
    sim = "histories = 20_000\nbatch_histories = 10_000\nmin_batches = 2"
    res = {}
    for name, extra in (("total", ""), ("rate0", "rate_at_h = 0.0"), ("rate_hl", f"rate_at_h = {59.40 * 24}"),
                        ("window", "start_h = 0.0\nend_h = 1e7")):
        run = _bone_case(tmp_path / name, sim=sim)
        kind = "permanent" if name == "total" else ("window" if name == "window" else "rate")
        text = run.read_text().replace('kind = "permanent"', f'kind = "{kind}"\n{extra}')
        run.write_text(text)
        res[name] = run_patient(load_run_config(run), tmp_path / f"o{name}", progress=False,
                                echo=lambda m: None).dose_gy
    tau = mean_life_hours()
    np.testing.assert_allclose(res["rate0"] * tau, res["total"], rtol=1e-12)
    np.testing.assert_allclose(res["rate_hl"], 0.5 * res["rate0"], rtol=1e-12)
    np.testing.assert_allclose(res["window"], res["total"], rtol=1e-9)
