"""The Markdown tables of docs/validation/README.md, made from the results themselves.

``python -m brachymc.validation.tables docs/validation`` prints the results table (Lambda, S_K,
mean energy, run), the acceptance table (the report's criteria, :func:`brachymc.validation.report.evaluate`
plus the primary-kerma check) and the g_L and F differences from the TG-43U1 consensus, for every
``MODEL/tg43_MODEL.json`` under the folder, so the page never holds numbers the JSON files do not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from brachymc.validation.clrp import CLRP_SK_DETECTOR, CLRP_SK_PER_HISTORY
from brachymc.validation.primary_check import PrimaryCheckResult
from brachymc.validation.report import _primary_check_line, default_reference_dir, evaluate, load_references
from brachymc.validation.tg43_mc import TG43Result

#: display order and names
MODELS = (("oncoseed_6711", "OncoSeed 6711"), ("best_2301", "Best 2301"), ("isoseed_i25s06", "IsoSeed I25.S06"),
          ("oncoseed_6711_nrc", "OncoSeed 6711, NRC wall (`oncoseed_6711_nrc`)"))


def _load(folder: Path):
    out = []
    for key, name in MODELS:
        p = folder / key / f"tg43_{key}.json"
        if p.is_file():
            prim = folder / key / f"primary_{key}.json"
            out.append((key, name, TG43Result.from_json(p), PrimaryCheckResult.from_json(prim) if prim.is_file() else None))
    return out


def _pct(x: float) -> str:
    return f"{100 * x:+.2f} %"


def results_table(rows, refdir) -> list[str]:
    lines = ["| seed | Lambda (cGy/h/U) | CLRP v2 | diff | TG-43U1 consensus | S_K per history (Gy cm2), WAFAC | "
             "S_K, CLRP's voxel (`clrp_wafac`) vs the CLRP header | mean E leaving (keV) | D(1 cm, 90) unc. | run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, name, r, _ in rows:
        ref = load_references(key, refdir)
        lam = r.lambda_cGy_per_h_per_U
        clrp = ref["lambda_clrp"] if key != "oncoseed_6711_nrc" else load_references("oncoseed_6711", refdir)["lambda_clrp"]
        hdr = CLRP_SK_PER_HISTORY.get(key)
        same = r.extra.get("sk_by_detector", {}).get(CLRP_SK_DETECTOR, {}).get("value")
        s = r.settings
        run = (f"{s.get('water_histories', 0) / 1e6:.0f}M + {s.get('sk_histories', 0) / 1e6:.0f}M, "
               f"{r.run_time_s:.0f} s, {s.get('transport', {}).get('engine', 'array')} engine")
        lines.append(
            f"| {name} | {lam:.4f} +- {100 * r.lambda_rel_unc:.2f} % | {'(' if key.endswith('_nrc') else ''}{clrp:.3f}"
            f"{')' if key.endswith('_nrc') else ''} | {_pct(lam / clrp - 1)} | "
            f"{ref['lambda_consensus'] if ref['lambda_consensus'] else '-'} | {r.sk_per_history_Gy_cm2:.4e} | "
            f"{f'{same:.4e} vs {hdr:.4e} ({_pct(same / hdr - 1)})' if hdr and same else '-'} | "
            f"{r.mean_energy_leaving_kev:.2f} | {100 * r.dose_1cm_90_rel_unc:.2f} % | {run} |")
    return lines


def acceptance_table(rows, refdir) -> list[str]:
    lines = ["| seed | criterion | measured | result |", "|---|---|---|---|"]
    for key, name, r, prim in rows:
        checks = evaluate(r, load_references(key, refdir))
        if prim is not None:
            checks.append(_primary_check_line(prim))
        for crit, meas, ok in checks:
            lines.append(f"| {name} | {crit} | {meas} | {'not judged' if ok is None else ('PASS' if ok else 'FAIL')} |")
    return lines


def gl_table(rows, refdir) -> list[str]:
    out = []
    for key, name, r, _ in rows:
        ref = load_references(key, refdir)["gL"]
        if not ref:
            continue
        cells = [(rr, v / ref[rr] - 1) for rr, v in zip(r.gL["r_cm"], r.gL["value"]) if rr in ref]
        if not out:
            out = ["| seed | " + " | ".join(f"{rr:g}" for rr, _ in cells) + " |",
                   "|---|" + "---|" * len(cells)]
        out.append(f"| {name} | " + " | ".join(f"{100 * d:+.1f}" for _, d in cells) + " |")
    return out


def f_tables(rows, refdir) -> list[str]:
    out = []
    for key, name, r, _ in rows:
        ref = load_references(key, refdir)["F"]
        if not ref:
            continue
        thetas = [t for t in r.F["theta_deg"] if any(t in ref[rr] for rr in ref) and t < 90]
        out += [f"{name}:", "", "| r (cm) | " + " | ".join(f"{t:g}" for t in thetas) + " |",
                "|---|" + "---|" * len(thetas)]
        for rr, row in zip(r.F["r_cm"], r.F["value"]):
            if rr not in ref:
                continue
            vals = dict(zip(r.F["theta_deg"], row))
            out.append(f"| {rr:g} | " + " | ".join(f"{100 * (vals[t] / ref[rr][t] - 1):+.1f}" if t in ref[rr] else "-"
                                                   for t in thetas) + " |")
        out.append("")
    return out


def markdown(folder: str | Path) -> str:
    folder = Path(folder)
    refdir = default_reference_dir()
    rows = _load(folder)
    parts = results_table(rows, refdir) + ["", "Acceptance (as in each report's summary page):", ""]
    parts += acceptance_table(rows, refdir)
    parts += ["", "g_L(r), brachymc / TG-43U1 consensus - 1 (%):", ""] + gl_table(rows, refdir)
    parts += ["", "F(r, theta), brachymc / TG-43U1 consensus - 1 (%), theta in degrees:", ""] + f_tables(rows, refdir)
    return "\n".join(parts).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", default="docs/validation")
    a = ap.parse_args(argv)
    sys.stdout.write(markdown(a.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
