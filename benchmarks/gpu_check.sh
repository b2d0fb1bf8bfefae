#!/usr/bin/env bash
# benchmarks/gpu_check.sh OUT_DIR [--cpu]
#
# The one command a session lent a GPU runs, as is, on a fresh machine with this repository:
#   1. an environment: a venv (system site packages, so the machine's CuPy is used) with brachymc
#      installed from the wheels in .whl/ (benchmarks/gpu_wheels.sh fetches them on a machine with
#      network; the GPU machine has none) or from PyPI; if the install fails, the source tree on
#      PYTHONPATH with the wheels unpacked beside it;
#   2. pytest -m gpu (array engine on CuPy vs NumPy, kernel GPU build vs CPU build, kernel vs array);
#   3. benchmarks/run.py on seed-water, grid100, vertebra and spine with both engines;
#   4. brachymc demo --mode full, end to end, with its stage times;
#   5. OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md (one table), plus the logs.
# It prints its progress and keeps within 8 minutes of wall time (each stage has a time limit).
# --cpu runs the same steps on the NumPy backend with CI-sized problems (to test this script).
set -u
OUT=${1:?usage: benchmarks/gpu_check.sh OUT_DIR [--cpu]}
MODE=${2:-gpu}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu_check.log"
: > "$LOG"
T0=$(date +%s)
say() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
WORK=${TMPDIR:-/tmp}/brachymc-gpu-check
rm -rf "$WORK"; mkdir -p "$WORK"
export BRACHYMC_CACHE_DIR="$WORK/cache"

# ---- 1. environment ------------------------------------------------------------------------------
PY=python3
for cand in python3 /opt/torch/.venv/bin/python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import cupy" >/dev/null 2>&1; then PY=$cand; break; fi
done
say "python: $PY ($($PY --version 2>&1)); mode $MODE"
VENV="$WORK/venv"
installed=no
if $PY -m venv --system-site-packages "$VENV" >>"$LOG" 2>&1; then
  if [ -d "$REPO/.whl" ]; then
    "$VENV/bin/python" -m pip install -q --no-index --find-links "$REPO/.whl" --no-build-isolation \
      -e "$REPO[gpu,dev]" >>"$LOG" 2>&1 && installed=venv
  else
    timeout 240 "$VENV/bin/python" -m pip install -q -e "$REPO[gpu,dev]" >>"$LOG" 2>&1 && installed=venv
  fi
fi
if [ "$installed" = venv ]; then
  PYR="$VENV/bin/python"
else
  say "editable install failed (see the log); using the source tree on PYTHONPATH"
  SITE="$WORK/site"
  if [ -d "$REPO/.whl" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$REPO"/.whl/*.whl >>"$LOG" 2>&1 \
      || say "unpacking .whl failed"
  fi
  export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
  PYR=$PY
fi
cd "$REPO"
$PYR - >"$OUT/environment.json" 2>>"$LOG" <<'EOF'
import json, platform, subprocess
info = {"python": platform.python_version(), "host": platform.node()}
try:
    import cupy
    info["cupy"] = cupy.__version__
    info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    p = cupy.cuda.runtime.getDeviceProperties(0)
    info["device"] = p["name"].decode() if isinstance(p["name"], bytes) else str(p["name"])
    info["sm_count"] = p["multiProcessorCount"]
    info["memory_gib"] = round(p["totalGlobalMem"] / 2**30, 1)
except Exception as exc:
    info["cupy_error"] = repr(exc)
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm",
                                         "--format=csv,noheader"], capture_output=True, text=True,
                                        timeout=20).stdout.strip()
except Exception as exc:
    info["nvidia_smi"] = repr(exc)
import brachymc, numpy
info["brachymc"] = brachymc.__version__
info["numpy"] = numpy.__version__
print(json.dumps(info, indent=1))
EOF
say "environment: $(tr -d '\n' < "$OUT/environment.json" | cut -c1-300)"

if [ "$MODE" = "--cpu" ]; then BACKEND=numpy; CI=--ci; DEMO=ci; else BACKEND=cupy; CI=; DEMO=full; fi

# ---- 2. pytest -m gpu ----------------------------------------------------------------------------
say "pytest -m gpu"
if [ "$MODE" = "--cpu" ]; then SEL="tests/test_kernel_engine.py -k threads"; else SEL="-m gpu tests"; fi
timeout 200 $PYR -m pytest -q -p no:cacheprovider $SEL >"$OUT/pytest_gpu.log" 2>&1
echo "exit $?" >>"$OUT/pytest_gpu.log"
say "pytest: $(grep -E 'passed|failed|error' "$OUT/pytest_gpu.log" | tail -1)"

# ---- 3. benchmark problems, both engines ---------------------------------------------------------
for problem in vertebra seed-water grid100 spine; do
  for engine in kernel array; do
    budget=15; [ "$engine" = array ] && budget=10
    say "benchmark $problem ($engine engine, <= ${budget} s of transport)"
    timeout 75 $PYR benchmarks/run.py --problem "$problem" --backend "$BACKEND" --engine "$engine" $CI \
      --time-budget "$budget" --workdir "$WORK/bench" --json "$WORK/bench_${problem}_${engine}.json" \
      >>"$LOG" 2>&1 || say "  $problem/$engine failed or ran out of time (see the log)"
  done
done

# ---- 4. the demo, end to end ---------------------------------------------------------------------
say "brachymc demo --mode $DEMO"
t_demo=$(date +%s.%N)
timeout 150 $PYR -m brachymc demo --mode "$DEMO" --backend "$BACKEND" --out "$WORK/demo" --no-progress \
  >"$WORK/demo.log" 2>&1
demo_rc=$?
t_demo=$(python3 -c "import time; print(round(time.time() - $t_demo, 2))")
tail -40 "$WORK/demo.log" >>"$LOG"
say "demo: exit $demo_rc in ${t_demo} s"

# ---- 5. one JSON, one table ----------------------------------------------------------------------
$PYR - "$OUT" "$WORK" "$demo_rc" "$t_demo" <<'EOF'
import glob, json, re, sys
from pathlib import Path
out, work, demo_rc, demo_s = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
env = json.loads((out / "environment.json").read_text() or "{}")
bench = []
for f in sorted(glob.glob(str(work / "bench_*.json"))):
    for r in json.loads(Path(f).read_text()):
        r["engine"] = Path(f).stem.rsplit("_", 1)[1]
        bench.append(r)
pt = (out / "pytest_gpu.log").read_text() if (out / "pytest_gpu.log").exists() else ""
m = re.findall(r"^=*\s*(.*(?:passed|failed|error).*?)\s*=*$", pt, re.M)
demo = {"exit": demo_rc, "wall_s": demo_s}
sj = work / "demo" / "summary.json"
if sj.exists():
    s = json.loads(sj.read_text())
    demo.update({k: s.get(k) for k in ("transport_time_s", "histories", "histories_per_second", "stage_times_s",
                                       "target_mean_rel_uncertainty", "device", "backend", "transport")})
targets = {"histories_per_s": 1e8, "vertebra_time_to_2pct_s": 0.1, "demo_full_s": 20.0}
res = {"environment": env, "pytest_gpu": m[-1] if m else None, "benchmarks": bench, "demo": demo, "targets": targets}
(out / "gpu_check.json").write_text(json.dumps(res, indent=1, default=str))
rows = ["| problem | engine | histories | histories/s | voxel steps/s | uncertainty | time to 2 % (s) |",
        "|---|---|---:|---:|---:|---:|---:|"]
for r in bench:
    u = r.get("rel_unc_reached")
    t = r.get("time_to_target_s")
    rows.append(f"| {r['problem']} | {r['engine']} | {r['histories']:,} | {r['histories_per_s']:,.0f} | "
                f"{r['voxel_steps_per_s']:,.0f} | {'' if u is None else f'{100 * u:.2f} %'} | "
                f"{'' if t is None else f'{t:.3g}' + ('*' if r.get('extrapolated') else '')} |")
md = [f"# brachymc GPU check: {env.get('device', '?')}", "",
      f"CuPy {env.get('cupy')}, CUDA runtime {env.get('cuda_runtime')}, driver {env.get('cuda_driver')}, "
      f"brachymc {env.get('brachymc')}", "", f"pytest -m gpu: {res['pytest_gpu']}", "", *rows, "",
      "* extrapolated as t (u / 2 %)^2", "",
      f"demo --mode full: exit {demo_rc}, {demo_s:.1f} s end to end; transport {demo.get('transport_time_s')} s; "
      f"stages {demo.get('stage_times_s')}"]
(out / "gpu_check.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
EOF
say "done: $OUT/gpu_check.json, $OUT/gpu_check.md"
