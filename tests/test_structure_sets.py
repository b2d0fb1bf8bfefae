"""Real structure sets run to the end: empty ROIs, ROIs outside the CT or the calculation grid,
nested contours (a ring), overlapping ROIs and ROIs partly covered are each classified before
transport, listed (console, summary.json, report) and never stop the run; only the target is
checked hard. Also: a seed near the CT edge is accepted and the phantom padded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _cases import box_contours, write_case
from brachymc.cli import main
from brachymc.errors import ConfigError
from brachymc.io.dicom_rtstruct import Structure
from brachymc.pipeline.config import load_run_config
from brachymc.pipeline.patient import load_inputs, run_patient

# CT: 20 x 20 x 16 voxels of 2 mm, x and y in [-20, 20] mm, z in [-16, 16] mm. Seeds at x = 0 and 5 mm;
# a crop margin of 8 mm keeps x in [-8, 14], y and z in [-8, 8] mm.
PLANES = np.arange(-4.0, 4.1, 2.0)       # 5 contour planes, 2 mm apart: slabs -5..5 mm (10 mm)
SEEDS = ((0.0, 0.0, 0.0), (5.0, 0.0, 0.0))


def _rois() -> list[Structure]:
    c = (180, 60, 20)
    return [
        Structure("GTV", 1, tuple(box_contours((-4, 10), (-4, 4), PLANES)), color=(255, 0, 0), roi_type="GTV"),
        Structure("Empty", 2, (), color=c),
        Structure("FarAway", 3, tuple(box_contours((40, 50), (-4, 4), PLANES)), color=c),       # beyond x = 20
        Structure("Cropped", 4, tuple(box_contours((-18, -12), (-4, 4), PLANES)), color=c),     # x < -8: off grid
        Structure("Ring", 5, tuple(box_contours((-6, 6), (-6, 6), PLANES, hole=((-2, 2), (-2, 2)))), color=(0, 0, 255)),
        Structure("Overlap", 6, tuple(box_contours((2, 12), (-3, 3), PLANES)), color=(0, 200, 0)),
        Structure("Partial", 7, tuple(box_contours((-16, 12), (-2, 2), PLANES)), color=c),      # x -16..-8 off grid
        Structure("Edge", 8, tuple(box_contours((10, 30), (-2, 2), PLANES)), color=c),          # CT ends at x = 20
    ]


@pytest.fixture(scope="module")
def structure_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rois")
    run = write_case(tmp / "case", seeds_mm=SEEDS, dirs=((0, 0, 1),) * 2, rois=_rois(),
                     ct="crop_margin_mm = 8", structures='target = "GTV"',
                     output="figures = true\nreport = true")
    out = tmp / "out"
    code = main(["run", str(run), "--out", str(out), "--no-progress"])
    return code, out


def test_every_kind_of_roi_runs_to_the_end(structure_run, capsys):
    code, out = structure_run
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    status = {r["name"]: r["status"] for r in s["rois"]}
    assert status == {"GTV": "evaluated", "Empty": "empty", "FarAway": "outside_ct", "Cropped": "outside_grid",
                      "Ring": "evaluated", "Overlap": "evaluated", "Partial": "partial", "Edge": "partial"}
    codes = {(n["code"], n.get("roi")) for n in s["notes"]}
    for name, st in (("Empty", "empty"), ("FarAway", "outside_ct"), ("Cropped", "outside_grid"),
                     ("Partial", "partial"), ("Edge", "partial")):
        assert (f"roi_{st}", name) in codes, (name, codes)
    # ROI colours come from the file (ROIDisplayColor)
    assert {r["name"]: r["color_rgb"] for r in s["rois"]}["Ring"] == [0, 0, 255]
    for f in ("report.pdf", "dvh.csv", "dvh.json", "dose.h5", "dvh.png", "slices.png", "mc_vs_tg43.png"):
        assert (out / f).is_file(), f
    assert not (out / "checkpoint.h5").exists()


def test_roi_volumes_and_coverage(structure_run):
    _, out = structure_run
    s = json.loads((out / "summary.json").read_text())
    rois = {r["name"]: r for r in s["rois"]}
    m = s["metrics"]
    assert set(m) == {"GTV", "Cropped", "Ring", "Overlap", "Partial", "Edge"}
    # nested contours: the hole is not part of the ring: (12 x 12 - 4 x 4) mm2 x 10 mm = 1.28 cm3
    assert rois["Ring"]["contour_volume_cc"] == pytest.approx(1.28, rel=1e-9)
    assert rois["Ring"]["volume_on_grid_cc"] == pytest.approx(1.28, rel=0.02)
    # overlapping ROIs keep their own volumes (14 x 8 and 10 x 6 mm2 x 10 mm)
    assert rois["GTV"]["volume_on_grid_cc"] == pytest.approx(1.12, rel=0.02)
    assert rois["Overlap"]["volume_on_grid_cc"] == pytest.approx(0.60, rel=0.02)
    # partly covered: 20 of its 28 mm lie on the grid; the MC DVH covers that, TG-43 the whole ROI
    p = m["Partial"]
    assert p["covered_fraction"] == pytest.approx(20 / 28, rel=0.02)
    assert p["mc"]["volume_cc"] == pytest.approx(0.80, rel=0.03)
    assert p["tg43"]["volume_cc"] == pytest.approx(p["mc"]["volume_cc"])
    assert p["tg43_whole"]["volume_cc"] == pytest.approx(1.12, rel=0.03)
    # the whole ROI reaches farther from the seeds: its D90 is lower than that of the covered part
    assert p["tg43_whole"]["D90_Gy"] < p["tg43"]["D90_Gy"]
    # across the CT edge: 10 of its 20 mm lie in the CT, 4 of those on the grid (x 10..14 mm)
    e = rois["Edge"]
    assert e["in_ct_fraction"] == pytest.approx(0.5, rel=0.03)
    assert e["covered_fraction"] == pytest.approx(0.4, rel=0.05)
    # outside the grid but inside the CT: a TG-43 DVH of the whole ROI, no MC
    c = m["Cropped"]
    assert c["mc"] is None and c["covered_fraction"] == 0.0
    assert c["tg43_whole"]["volume_cc"] == pytest.approx(0.48, rel=0.03)
    assert 0 < c["tg43_whole"]["D90_Gy"] < c["tg43_whole"]["Dmean_Gy"]


def test_metrics_have_batch_uncertainties(structure_run):
    _, out = structure_run
    s = json.loads((out / "summary.json").read_text())
    g = s["metrics"]["GTV"]
    assert g["mc_unc_groups"] == 4                # 4 batches -> 4 groups of one batch
    for k in ("D90_Gy", "D100_Gy", "Dmean_Gy", "V100_percent"):
        assert g["mc_unc"][k] is not None and g["mc_unc"][k] >= 0, k
    assert 0 < g["mc_unc"]["D90_Gy"] < 0.5 * g["mc"]["D90_Gy"]


def test_outputs_are_strict_json_and_lf_csv(structure_run):
    _, out = structure_run
    text = (out / "summary.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"summary.json holds {c}"))
    json.loads((out / "dvh.json").read_text(), parse_constant=lambda c: pytest.fail(f"dvh.json holds {c}"))
    raw = (out / "dvh.csv").read_bytes()
    assert b"\r" not in raw
    rows = [ln.split(",") for ln in raw.decode().splitlines()[1:]]
    per = {}
    for r in rows:
        per.setdefault((r[0], r[1]), []).append(float(r[2]))
    # every ROI's curve is binned at 1/1000 of its own highest dose (no ROI gets a few points)
    for (roi, calc), doses in per.items():
        assert len(doses) >= 500, (roi, calc, len(doses))
    assert ("Cropped", "tg43_whole_roi") in per and ("Cropped", "mc") not in per
    assert ("Partial", "tg43_whole_roi") in per and ("Partial", "mc") in per


def test_roi_selection(tmp_path):
    run = write_case(tmp_path / "c", seeds_mm=SEEDS, dirs=((0, 0, 1),) * 2, rois=_rois(), ct="crop_margin_mm = 8",
                     structures='rois = ["Ring", "overlap"]\nexclude = ["Ring", "NoSuchROI"]\ncord = "Partial"')
    inp = load_inputs(load_run_config(run))
    status = {n: r.status for n, r in inp.rois.rois.items()}
    assert status["Overlap"] == "evaluated" and status["Partial"] == "partial"      # the cord is always evaluated
    assert status["Ring"] == status["GTV"] == status["Empty"] == "excluded"
    assert inp.rois.cord == "Partial" and inp.rois.target is None
    assert set(inp.structures) == {"Overlap", "Partial"}
    assert any(n.code == "roi_exclude_unknown" for n in inp.notes)
    bad = write_case(tmp_path / "d", seeds_mm=SEEDS, dirs=((0, 0, 1),) * 2, rois=_rois(),
                     structures='rois = ["GTV", "Liver"]')
    with pytest.raises(ConfigError, match=r"rtstruct.dcm: no ROI named 'Liver' \(\[structures\].rois\)"):
        load_inputs(load_run_config(bad))


def test_seed_at_the_ct_edge_is_padded(tmp_path, capsys):
    """A seed 1 mm inside the CT edge: accepted; the phantom is padded with the adjacent medium
    beyond the edge (before the world is built) and the run says so."""
    run = write_case(tmp_path / "c", seeds_mm=((0.0, 0.0, 15.0),), structures="")
    res = run_patient(load_run_config(run), tmp_path / "out", progress=False, echo=print)
    err = capsys.readouterr().out
    assert "seed #1 reaches past the CT edge" in err
    g = res.geometry
    assert g.upper[2] * 10 > 16.0 + 1.0            # the grid reaches past the CT's z = 16 mm
    s = res.summary
    assert s["grid"]["padding_voxels"] == {"z+": 1} and s["grid"]["padded_for_seeds"] == [1]
    assert any(n["code"] == "grid_padded" for n in s["notes"])
    assert np.all(res.phantom.material_index[-1] == res.phantom.material_index[-2])    # the adjacent medium
    assert res.dose_gy[-3:].max() > 0
