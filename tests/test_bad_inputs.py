"""Every bad input fails before transport: exit status 2, a message naming the file (or option)
and the field with plain numbers, no batch transported, nothing left in --out.

Table-driven: each case edits a small valid case (run file, plan, structures or command line).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from _cases import box_contours, write_case
from brachymc.cli import main
from brachymc.io.dicom_rtstruct import Structure

PLANES = np.arange(-4.0, 4.1, 2.0)


def _rois():
    return [Structure("GTV", 1, tuple(box_contours((-4, 10), (-4, 4), PLANES)), roi_type="GTV"),
            Structure("Empty", 2, ()),
            Structure("Tiny", 3, tuple(box_contours((-1, 1), (-1, 1), [0.0]))),
            Structure("Aside", 4, tuple(box_contours((-18, -12), (-4, 4), PLANES)))]


def _base(tmp: Path, **kw) -> Path:
    args = dict(seeds_mm=((0.0, 0.0, 0.0), (5.0, 0.0, 0.0)), dirs=((0, 0, 1),) * 2, rois=_rois(),
                structures='target = "GTV"')
    args.update(kw)
    return write_case(tmp / "case", **args)


def _edit(run: Path, old: str, new: str) -> None:
    text = run.read_text()
    assert old in text, old
    run.write_text(text.replace(old, new, 1))


def _plan(rows: list[str], header="x_mm,y_mm,z_mm,dx,dy,dz,sk_U"):
    return dict(plan_header=header, plan_rows=rows)


GOOD = ["0,0,0,0,0,1,1.0", "5,0,0,0,0,1,1.0"]

# (id, case keyword arguments, run-file edit (old, new) or None, extra CLI arguments, expected message parts)
CASES = [
    ("absurd-voxel", dict(ct="calculation_voxel_mm = 1000"), None, [],
     ["run.toml", "[ct].calculation_voxel_mm", "1000 mm calculation voxel"]),
    ("voxel-vs-target", dict(ct="calculation_voxel_mm = 8"), None, [],
     ["run.toml", "[ct].calculation_voxel_mm", "cannot resolve the target 'GTV'"]),
    ("voxel-nan", dict(ct="calculation_voxel_mm = [2, nan, 2]"), None, [], ["run.toml", "calculation_voxel_mm", "nan"]),
    ("crop-negative", dict(ct="crop_margin_mm = -5"), None, [], ["run.toml", "[ct].crop_margin_mm", "-5"]),
    ("prescription-nan", dict(dose="kind = \"permanent\""), ("prescription_gy = 100", "prescription_gy = nan"), [],
     ["run.toml", "[dose].prescription_gy", "finite"]),
    ("budget-inf", dict(simulation={"time_budget_s": "inf"}), None, [], ["run.toml", "[simulation].time_budget_s"]),
    ("batch-zero", dict(simulation={"batch_histories": 0}), None, [],
     ["run.toml", "[simulation].batch_histories", ">= 1, got 0"]),
    ("histories-float", dict(simulation={"histories": 2.5}), None, [], ["run.toml", "[simulation].histories", "2.5"]),
    ("override-density", dict(extra='[[override]]\nroi = "GTV"\nmaterial = "water"\ndensity = -1'), None, [],
     ["run.toml", "[[override]] #1", "density", "-1"]),
    ("plan-sk-zero", dict(), ('orientation = "given"', 'orientation = "given"\nsk_U = 0'), [],
     ["run.toml", "[plan].sk_U", "positive"]),
    ("csv-nan-position", _plan(["0,0,0,0,0,1,1.0", "5,nan,0,0,0,1,1.0"]), None, [],
     ["plan.csv", "line 3 (seed 2)", "y_mm", "nan is not a finite number"]),
    ("csv-inf-strength", _plan(["0,0,0,0,0,1,inf", "5,0,0,0,0,1,1.0"]), None, [],
     ["plan.csv", "line 2 (seed 1)", "sk_U", "inf"]),
    ("csv-zero-strength", _plan(["0,0,0,0,0,1,1.0", "# a comment", "5,0,0,0,0,1,0"]), None, [],
     ["plan.csv", "line 4 (seed 2)", "sk_U", "must be > 0, got 0"]),
    ("csv-zero-direction", _plan(["0,0,0,0,0,0,1.0", "5,0,0,0,0,1,1.0"], "x_mm,y_mm,z_mm,ux,uy,uz,sk_U"), None, [],
     ["plan.csv", "line 2 (seed 1)", "direction"]),
    ("seed-outside-ct", _plan(["0,0,0,0,0,1,1.0", "0,0,25.5,0,0,1,1.0"]), None, [],
     ["plan.csv", "#2 at (0, 0, 25.5) mm", "outside the CT", "z -16.0..16.0 mm"]),
    ("target-missing", dict(structures='target = "PTV"'), None, [], ["rtstruct.dcm", "'PTV'", "[structures].target"]),
    ("target-empty", dict(structures='target = "Empty"'), None, [], ["rtstruct.dcm", "'Empty'", "has no contours"]),
    ("target-excluded", dict(structures='target = "GTV"\nexclude = ["gtv"]'), None, [],
     ["run.toml", "[structures].exclude", "'GTV'"]),
    ("target-cropped-away", dict(structures='target = "Aside"', ct="crop_margin_mm = 8"), None, [],
     ["rtstruct.dcm", "'Aside'", "outside the calculation grid"]),
    ("target-unresolved", dict(structures='target = "Tiny"'), None, [],
     ["run.toml", "[ct].calculation_voxel_mm", "cannot resolve the target 'Tiny'"]),
    ("roi-unknown", dict(structures='rois = ["GTV", "Liver"]'), None, [], ["rtstruct.dcm", "'Liver'", "[structures].rois"]),
    ("histories-0", dict(), None, ["--histories", "0"], ["--histories", ">= 1, got 0"]),
    ("workers-0", dict(), None, ["--workers", "0"], ["--workers", ">= 1", "got 0"]),
    ("budget-0", dict(), None, ["--time-budget", "0"], ["--time-budget", "positive", "got 0"]),
    ("target-unc-2", dict(), None, ["--target-uncertainty", "2"], ["--target-uncertainty", "got 2"]),
    ("seed-negative", dict(), None, ["--seed", "-1"], ["--seed", ">= 0, got -1"]),
    ("resume-nothing", dict(), None, ["--resume"], ["--resume", "nothing to resume", "out"]),
]


@pytest.fixture
def transported(monkeypatch):
    """Counts the batches transported (every engine and executor goes through compute_batch)."""
    import brachymc.pipeline.runner as runner

    calls = []
    real = runner.compute_batch

    def counting(*a, **k):
        calls.append(a[5] if len(a) > 5 else k.get("batch"))
        return real(*a, **k)

    monkeypatch.setattr(runner, "compute_batch", counting)
    return calls


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_before_transport(case, tmp_path, capsys, transported):
    _, kw, edit, argv, needles = case
    run = _base(tmp_path, **kw)
    if edit is not None:
        _edit(run, *edit)
    out = tmp_path / "out"
    code = main(["run", str(run), "--out", str(out), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    msg = err.strip().splitlines()[-1]
    assert msg.startswith("brachymc: error: "), err
    for n in needles:
        assert n in msg, (n, msg)
    assert "np.float" not in msg and "Traceback" not in err
    assert transported == [], "a batch was transported before the error"
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_out_naming_a_file(tmp_path, capsys, transported):
    run = _base(tmp_path)
    out = tmp_path / "results.txt"
    out.write_text("keep me")
    for cmd in (["run", str(run)], ["demo"]):
        code = main([*cmd, "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and re.search(r"--out .*results.txt: is a file, not a folder", err), err
    assert out.read_text() == "keep me" and transported == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "results.txt"]


def test_seed_centre_inside_the_ct_is_accepted(tmp_path, capsys):
    """The counterpart of seed-outside-ct: a centre 1 mm inside the edge runs (padded, noted)."""
    run = _base(tmp_path, **_plan(["0,0,0,0,0,1,1.0", "0,0,15,0,0,1,1.0"]))
    code = main(["run", str(run), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "seed #2 reaches past the CT edge: the phantom is padded with the adjacent medium" in err
