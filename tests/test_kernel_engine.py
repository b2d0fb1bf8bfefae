"""The kernel engine (CPU build of mc/kernels/transport.cu) against the array engine and against
exact references: its random numbers, arithmetic, geometry, sampling and transport.

Statistical comparisons use tolerances from the computed uncertainties (3 combined sigma, or a
chi-square test at p > 1e-3); deterministic ones compare the kernel's own functions, called through
the CPU build's test entry points, with the array engine's functions on the same inputs.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from scipy import stats

from brachymc.backend import get_backend
from brachymc.geometry.phantom import GridGeometry, VoxelPhantom
from brachymc.geometry.seed import load_builtin_seed, ray_invariants, seed_library
from brachymc.geometry.seeded_phantom import SeededVoxelWorld, SeedPlacement
from brachymc.mc import interactions as ia
from brachymc.mc.kernel_build import cpu_library
from brachymc.mc.kernel_engine import KernelTransport, seed_model_params
from brachymc.mc.kernel_params import ParamBlock
from brachymc.mc.tables_cache import load_or_build_tables
from brachymc.mc.transport import TransportSettings, make_transport
from brachymc.sources.seed_source import SeedSetSource, SeedSource
from brachymc.sources.simple import LineSource, PointSource
from brachymc.sources.spectrum import Spectrum, load_spectrum

NP = get_backend("numpy")
I125 = load_spectrum("i125_ncrp58")


def _ptr(a: np.ndarray):
    return ctypes.c_void_p(a.ctypes.data)


@pytest.fixture(scope="module")
def lib():
    return cpu_library()


def run_engine(world, source, engine, n, batches=10, seed=11, **kw):
    """Per-batch raw tallies (kerma and friends) and energy bookkeeping of one engine."""
    tables = load_or_build_tables(list(world.materials if not isinstance(world, VoxelPhantom)
                                       else world.materials))
    tr = make_transport(world, tables, NP, TransportSettings(engine=engine, **kw))
    assert tr.engine == engine
    out = {"kerma": [], "primary": [], "water": [], "collision": [], "emitted": [], "escaped": [], "local": [],
           "unscored": [], "steps": 0, "tr": tr}
    for b in range(batches):
        sc = tr.run_batch(source, n, np.random.SeedSequence([seed, b]))
        for k in ("kerma", "primary", "water", "collision"):
            v = getattr(sc, k)
            if v is not None:
                out[k].append(np.array(v))
        out["emitted"].append(float(sc.emitted_energy) / n)
        out["escaped"].append(float(sc.escaped_energy) / n)
        out["local"].append(float(sc.absorbed_local) / n)
        out["unscored"].append(float(sc.unscored_energy) / n)
        out["steps"] += sc.steps
        assert sc.extra.get("lost", 0.0) == 0.0
    for k in ("kerma", "primary", "water", "collision"):
        out[k] = np.array(out[k]) / n if out[k] else None
    return out


def mean_sem(x):
    x = np.asarray(x, float)
    return x.mean(axis=0), x.std(axis=0, ddof=1) / np.sqrt(x.shape[0])


def assert_same_within_stats(a, b, min_bins=20, rel_cut=0.1):
    """Bins where both estimates are < rel_cut uncertain agree: a chi-square test over them."""
    ma, sa = mean_sem(a)
    mb, sb = mean_sem(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        sel = (ma > 0) & (mb > 0) & (sa / ma < rel_cut) & (sb / mb < rel_cut)
    assert sel.sum() >= min_bins, sel.sum()
    z = (ma - mb)[sel] / np.hypot(sa, sb)[sel]
    chi2 = float(np.sum(z * z))
    # batch-mean errors with 10 batches are themselves uncertain: compare with the t-distribution's
    # variance (dof 9 -> var 9/7), which a plain chi-square would understate
    dof = int(sel.sum())
    var_t = 9.0 / 7.0
    p = stats.chi2.sf(chi2 / var_t, dof)
    assert p > 1e-3, (chi2, dof, p)
    # and no bias overall: the dose summed over those bins, batch by batch (bins of one batch are
    # correlated -- the same photons score in many of them -- so the sum, not the mean z, has the
    # batch statistics)
    (ta, ua), (tb, ub) = mean_sem(np.asarray(a)[:, sel].sum(axis=1)), mean_sem(np.asarray(b)[:, sel].sum(axis=1))
    assert abs(ta - tb) < 3.5 * np.hypot(ua, ub), (ta, tb, ua, ub)


# ------------------------------------------------------------------------------------------ RNG
def test_philox_known_answers(lib):
    """Random123's published known-answer vectors for Philox4x32-10."""
    cases = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for ctr, key, expected in cases:
        c, k, out = (np.array(ctr, np.uint32), np.array(key, np.uint32), np.zeros(4, np.uint32))
        lib.dll.bmc_test_philox(_ptr(c), _ptr(k), _ptr(out))
        assert tuple(int(x) for x in out) == expected


def test_uniform_numbers_are_32_bit_and_uniform(lib):
    n = 200_000
    u = np.zeros(n)
    lib.dll.bmc_test_uniform(12345, 678, 9, n, _ptr(u))
    assert u.min() > 0.0 and u.max() < 1.0
    x = u * 2.0**32 - 0.5                                           # (x + 1/2) 2^-32, x a 32-bit word
    assert np.all(x == np.round(x)) and x.min() >= 0 and x.max() <= 2.0**32 - 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # the first four values are the first Philox block of counter (0, history) under the key
    c, k, out = np.array([0, 9, 0, 0], np.uint32), np.array([12345, 678], np.uint32), np.zeros(4, np.uint32)
    lib.dll.bmc_test_philox(_ptr(c), _ptr(k), _ptr(out))
    np.testing.assert_array_equal(u[:4], (out.astype(np.float64) + 0.5) / 2.0**32)
    # another history is another stream
    v = np.zeros(1000)
    lib.dll.bmc_test_uniform(12345, 678, 10, 1000, _ptr(v))
    assert abs(np.corrcoef(u[:1000], v)[0, 1]) < 0.15


# --------------------------------------------------------------------------------------- detmath
@pytest.mark.parametrize("kind,lo,hi", [(0, -30.0, 12.0), (1, 1e-6, 1e5), (2, 0.0, 1.0), (3, 0.0, 1.0)])
def test_deterministic_math_is_accurate(lib, kind, lo, hi):
    """exp, log and cos/sin(2 pi u) from basic operations only: within 1 ulp of NumPy (libm)."""
    rng = np.random.default_rng(kind)
    x = (np.exp(rng.uniform(np.log(lo), np.log(hi), 100_000)) if kind == 1 else
         np.floor(rng.random(100_000) * 2.0**53) / 2.0**53 if kind >= 2 else rng.uniform(lo, hi, 100_000))
    x = np.concatenate([x, [1.0, 0.5, 2.0, 0.0]]) if kind != 1 else np.concatenate([x, [1.0, 0.5, 2.0, 1 - 2**-53]])
    if kind >= 2:
        x = x[x < 1.0]
    out = np.zeros_like(x)
    lib.dll.bmc_test_math(kind, x.size, _ptr(x), _ptr(out))
    if kind <= 1:
        ref = np.exp(x) if kind == 0 else np.log(x)
        ulp = np.spacing(np.abs(ref))
        assert np.max(np.abs(out - ref) / ulp) <= 1.0
    else:
        # reference: the exact quadrant reduction (4u - q is exact), then libm on |angle| <= pi/2,
        # whose argument is accurate to 1e-16 (np.cos(2 pi u) itself is off by up to 7e-16 near u = 1)
        q = np.floor(4 * x)
        a = (4 * x - q) * (np.pi / 2)
        c0, s0 = np.cos(a), np.sin(a)
        qi = q.astype(int) % 4
        cos_ref = np.choose(qi, [c0, -s0, -c0, s0])
        sin_ref = np.choose(qi, [s0, c0, -s0, -c0])
        ref = cos_ref if kind == 2 else sin_ref
        assert np.max(np.abs(out - ref)) <= 2.5e-16


# -------------------------------------------------------------------------------------- geometry
def _seed_block(model):
    b = ParamBlock(np)
    b.set(**seed_model_params(model), solid_mat=np.zeros(len(model.solids), np.int32),
          solid_rho=np.zeros(len(model.solids)))
    return b


@pytest.mark.parametrize("key", sorted(seed_library()))
def test_seed_tracing_equals_array_engine(lib, key, library):
    """Distance to the next surface and the solid holding a point: the kernel's seed.h gives the
    array engine's numbers for rays from inside the seed, on its surfaces and from outside."""
    model = load_builtin_seed(key, library)
    zlo, zhi, rs = model.bounds()
    rng = np.random.default_rng(5)
    n = 40_000
    z0, x0, y0 = model.sample_active(np, rng, n // 2)
    pos = np.concatenate([np.stack([x0, y0, z0]),
                          np.stack([rng.uniform(-2 * rs, 2 * rs, n // 2), rng.uniform(-2 * rs, 2 * rs, n // 2),
                                    rng.uniform(1.2 * zlo, 1.2 * zhi, n // 2)])], axis=1)
    # points exactly on surfaces: planes and cylinders of the model
    pos[2, :500] = rng.choice(model.surfaces["planes"], 500)
    r = rng.choice(model.surfaces["cylinders"], 500)
    ph = rng.uniform(0, 2 * np.pi, 500)
    pos[0, 500:1000], pos[1, 500:1000] = r * np.cos(ph), r * np.sin(ph)
    d = rng.normal(size=(3, n))
    d /= np.linalg.norm(d, axis=0)
    d[:, :200] = np.array([[0.0], [0.0], [1.0]])                        # along the axis
    z, r2, w, pd = ray_invariants(np, pos, d, np.zeros(3), np.array([0.0, 0.0, 1.0]))
    t_ref = model.distance_to_surface(np, z, r2, w, pd)
    loc_ref = model.locate(np, z, r2)
    b = _seed_block(model)
    t = np.zeros(n)
    loc = np.zeros(n, np.int32)
    arrs = [np.ascontiguousarray(a, dtype=np.float64) for a in (z, r2, w, pd)]
    lib.dll.bmc_test_seed(ctypes.c_void_p(b.address()), n, *[_ptr(a) for a in arrs], _ptr(t), _ptr(loc))
    np.testing.assert_array_equal(loc, loc_ref)
    np.testing.assert_allclose(t, t_ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("key", ["oncoseed_6711", "best_2301"])
def test_outside_the_envelope_no_solid_is_skipped(lib, key, library):
    """From outside a seed's envelope the kernel stops only where the ray enters the envelope (not at
    every extended surface, as the array engine does): along the skipped part no point lies in a solid,
    and just past the stop the ray is in the envelope."""
    model = load_builtin_seed(key, library)
    zlo, zhi, rs = model.bounds()
    rng = np.random.default_rng(11)
    n = 4000
    # points in the bounding sphere but outside the envelope cylinder
    R = np.sqrt(max(zlo * zlo, zhi * zhi) + rs * rs)
    p = rng.uniform(-R, R, (3, 4 * n))
    rr = np.hypot(p[0], p[1])
    keep = (np.sum(p * p, 0) < R * R) & ((rr > rs * 1.001) | (p[2] > zhi * 1.001) | (p[2] < zlo * 1.001))
    p = p[:, keep][:, :n]
    d = rng.normal(size=(3, p.shape[1]))
    d /= np.linalg.norm(d, axis=0)
    z, r2, w, pd = ray_invariants(np, p, d, np.zeros(3), np.array([0.0, 0.0, 1.0]))
    arrs = [np.ascontiguousarray(a, dtype=np.float64) for a in (z, r2, w, pd)]
    t = np.zeros(z.size)
    b = _seed_block(model)
    lib.dll.bmc_test_seed_next(ctypes.c_void_p(b.address()), z.size, *[_ptr(a) for a in arrs], _ptr(t))
    hit = t < 1e29
    assert 0.05 < hit.mean() < 0.95
    s = np.linspace(0.0, 1.0, 257)[:-1]
    for j in np.flatnonzero(hit)[:500]:
        q = p[:, j:j + 1] + d[:, j:j + 1] * (t[j] * s)
        zq, r2q, _, _ = ray_invariants(np, q, np.repeat(d[:, j:j + 1], s.size, 1), np.zeros(3), np.array([0.0, 0.0, 1.0]))
        assert np.all(model.locate(np, zq, r2q) < 0), j
        e = p[:, j] + d[:, j] * (t[j] * (1 + 1e-9) + 1e-10)
        ze = e[2]
        assert np.hypot(e[0], e[1]) <= rs * (1 + 1e-6) and zlo * (1 + 1e-6) <= ze <= zhi * (1 + 1e-6)
    # rays that miss the envelope meet no solid at all (the array engine's next-surface walk agrees)
    for j in np.flatnonzero(~hit)[:300]:
        q = p[:, j:j + 1] + d[:, j:j + 1] * (2 * R * s)
        zq, r2q, _, _ = ray_invariants(np, q, np.repeat(d[:, j:j + 1], s.size, 1), np.zeros(3), np.array([0.0, 0.0, 1.0]))
        assert np.all(model.locate(np, zq, r2q) < 0), j


# -------------------------------------------------------------------------------------- sampling
def _kernel_source_photons(lib, transport, source, n, key=(3, 4)):
    transport._pack_source(source)
    b = transport._base
    b.set(key0=key[0], key1=key[1], first_history=0)
    out = np.zeros((n, 8))
    lib.dll.bmc_test_source(ctypes.c_void_p(b.address()), n, _ptr(out))
    return out


def test_seed_source_matches_array_sampler(lib, library):
    """Decay positions, directions, energies and seed choice of the kernel's seed source follow the
    array engine's SeedSetSource sampler (KS tests on the seed-frame coordinates, chi-square on the
    seed and line choice)."""
    model = load_builtin_seed("oncoseed_6711", library)
    g = GridGeometry.centered((3.0, 3.0, 3.0), (0.25, 0.25, 0.25))
    ph = VoxelPhantom.homogeneous(g, library["water"])
    pl = (SeedPlacement((0.0, 0.0, 0.0), (0.0, 0.0, 1.0)), SeedPlacement((0.8, 0.3, -0.5), (1.0, 1.0, 0.0)),
          SeedPlacement((-0.7, 0.6, 0.6), (0.3, -0.2, 1.0)))
    world = SeededVoxelWorld(ph, model, pl, library, NP, volume_samples=20_000)
    src = SeedSetSource(model, pl, weights=(1.0, 2.0, 3.0))
    tr = KernelTransport(world, load_or_build_tables(list(world.materials)), NP, TransportSettings(engine="kernel"))
    n = 60_000
    k = _kernel_source_photons(lib, tr, src, n)
    a = src.sample(np, np.random.default_rng(8), n)
    # seed choice and energy lines
    ka, kk = np.asarray(a.tag), k[:, 7].astype(int)
    table = np.array([np.bincount(ka, minlength=3), np.bincount(kk, minlength=3)])
    assert stats.chi2_contingency(table)[1] > 1e-3
    ea, ek = np.asarray(a.energy), k[:, 6]
    lines = np.array(I125.energies_kev)
    table = np.array([[np.sum(ea == e) for e in lines], [np.sum(ek == e) for e in lines]])
    assert stats.chi2_contingency(table)[1] > 1e-3
    # positions in each seed's frame
    for s in range(3):
        c, ax = np.array(pl[s].center), np.array(pl[s].axis) / np.linalg.norm(pl[s].axis)
        pa, pk = (a.position[:, ka == s] - c[:, None]), (k[kk == s, :3].T - c[:, None])
        for p, name in ((pa, "array"), (pk, "kernel")):
            zz = ax @ p
            rr = np.sum(p * p, axis=0) - zz * zz
            assert np.all(model.inside(np, model.solid_index("coating"), zz, rr * (1 - 1e-9) + 1e-18) |
                          model.inside(np, model.solid_index("coating"), zz, rr)), name
        za, zk = ax @ pa, ax @ pk
        assert stats.ks_2samp(za, zk).pvalue > 1e-3
        assert stats.ks_2samp(np.sum(pa * pa, 0) - za**2, np.sum(pk * pk, 0) - zk**2).pvalue > 1e-3
    # isotropic directions
    dk = k[:, 3:6]
    np.testing.assert_allclose(np.linalg.norm(dk, axis=1), 1.0, rtol=1e-12)
    for axis in range(3):
        assert stats.kstest(dk[:, axis], "uniform", args=(-1, 2)).pvalue > 1e-3


def test_line_source_matches_array_sampler(lib, library):
    g = GridGeometry.centered((8, 8, 8), (0.5, 0.5, 0.5))
    ph = VoxelPhantom.homogeneous(g, library["water"])
    src = LineSource((-1.0, 0.5, 0.0), (1.0, -0.5, 0.3), I125)
    tr = KernelTransport(ph, load_or_build_tables(list(ph.materials)), NP, TransportSettings(engine="kernel"))
    k = _kernel_source_photons(lib, tr, src, 20_000)
    a = src.sample(np, np.random.default_rng(1), 20_000)
    for axis in range(3):
        assert stats.ks_2samp(a.position[axis], k[:, axis]).pvalue > 1e-3


def test_interaction_sampling_equals_array_functions(lib, library):
    """Compton and Rayleigh cos(theta) and the fluorescence line from the same uniforms: the kernel's
    physics.h gives the array engine's mc/interactions.py values."""
    mats = [library[m] for m in ("water", "cortical_bone", "silver", "titanium", "silver_halide")]
    tables = load_or_build_tables(mats)
    g = GridGeometry.centered((2, 2, 2), (1.0, 1.0, 1.0))
    ph = VoxelPhantom(g, tuple(mats), np.zeros(g.shape, np.uint8), np.ones(g.shape))
    tr = KernelTransport(ph, tables, NP, TransportSettings(engine="kernel"))
    dt = tr.tables
    rng = np.random.default_rng(3)
    n = 20_000
    e = np.exp(rng.uniform(np.log(1.5), np.log(49.0), n))
    e[:50] = 25.514                                  # at the Ag K edge
    u = rng.random((n, 3))
    for m in range(len(mats)):
        out = np.zeros((n, 3))
        lib.dll.bmc_test_interactions(ctypes.c_void_p(tr._base.address()), m, n, _ptr(e), _ptr(u), _ptr(out))
        mm = np.full(n, m)
        cos_c = ia.sample_cos_theta(np, dt.compton_q, dt, mm, e, u[:, 0], dt.compton_pdf)
        cos_r = ia.sample_cos_theta(np, dt.rayleigh_q, dt, mm, e, u[:, 0], dt.rayleigh_pdf)
        ie, _ = ia.energy_position(np, dt, e)
        emit, e_fl = ia.sample_fluorescence(np, dt, mm, ie, u[:, 1], u[:, 2])
        np.testing.assert_allclose(out[:, 0], cos_c, rtol=0, atol=1e-12)
        np.testing.assert_allclose(out[:, 1], cos_r, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(out[:, 2], np.where(emit, e_fl, 0.0))


def test_energy_grid_position_equals_searchsorted(lib, library):
    """The kernel's table-accelerated search finds numpy's interval (side='right' - 1, clipped) for
    energies across the grid, exactly at grid points and at the duplicated absorption edges."""
    mats = [library[m] for m in ("water", "silver", "silver_halide", "tungsten", "gold")]
    tables = load_or_build_tables(mats)
    g = GridGeometry.centered((2, 2, 2), (1.0, 1.0, 1.0))
    ph = VoxelPhantom(g, tuple(mats), np.zeros(g.shape, np.uint8), np.ones(g.shape))
    tr = KernelTransport(ph, tables, NP, TransportSettings(engine="kernel"))
    ln = np.log(tables.energy)
    rng = np.random.default_rng(4)
    x = np.concatenate([ln, np.nextafter(ln, -np.inf), np.nextafter(ln, np.inf),
                        rng.uniform(ln[0], ln[-1], 50_000), [ln[0] - 0.1, ln[-1] + 0.1]])
    i = np.zeros(x.size, np.int32)
    f = np.zeros(x.size)
    lib.dll.bmc_test_energy_position(ctypes.c_void_p(tr._base.address()), x.size, _ptr(x), _ptr(i), _ptr(f))
    i_ref, f_ref = ia.energy_position(np, tr.tables, np.exp(x))
    i_np = np.clip(np.searchsorted(ln, x, side="right") - 1, 0, ln.size - 2)
    np.testing.assert_array_equal(i, i_np)
    ok = np.abs(np.log(np.exp(x)) - x) == 0           # where exp/log round-trips, the array engine agrees
    np.testing.assert_array_equal(i[ok], i_ref[ok])
    np.testing.assert_allclose(f, (x - ln[i]) * tr.tables.inv_dln[i], rtol=0, atol=0)


# ------------------------------------------------------------------------------------- transport
@pytest.fixture(scope="module")
def water_point(library):
    g = GridGeometry.centered((8.4, 8.4, 8.4), (0.4, 0.4, 0.4))
    ph = VoxelPhantom.homogeneous(g, library["water"])
    src = PointSource((0.0, 0.0, 0.0), I125)
    return ph, src, {e: run_engine(ph, src, e, 20_000, score_primary=True, score_collision=True)
                     for e in ("array", "kernel")}


def test_point_source_in_water_dose_in_shells(water_point):
    """Dose in spherical shells about an I-125 point source in water: kernel == array within statistics."""
    ph, _src, res = water_point
    g = ph.geometry
    zc, yc, xc = np.meshgrid(g.centers(2), g.centers(1), g.centers(0), indexing="ij")
    r = np.sqrt(xc**2 + yc**2 + zc**2).reshape(-1)
    edges = np.array([0.3, 0.7, 1.1, 1.6, 2.2, 3.0, 3.8])
    shell = np.digitize(r, edges) - 1
    for q in ("kerma", "primary"):
        per = {e: np.array([[x[shell == s].sum() for s in range(len(edges) - 1)] for x in res[e][q]])
               for e in res}
        ma, sa = mean_sem(per["array"])
        mk, sk = mean_sem(per["kernel"])
        z = (ma - mk) / np.hypot(sa, sk)
        assert np.all(np.abs(z) < 3.5), (q, z)
        assert stats.chi2.sf(np.sum(z * z) / (9 / 7), z.size) > 1e-3
    assert_same_within_stats(res["array"]["kerma"], res["kernel"]["kerma"])


def test_energy_balance_is_exact(water_point):
    """Per batch: emitted = escaped + collision-deposited + local deposits, to rounding (kernel)."""
    ph, _src, res = water_point
    k = res["kernel"]
    rho = ph.density.reshape(-1)
    for b in range(10):
        dep = float(np.dot(k["collision"][b], rho))             # collision tally x density = keV/history
        assert k["emitted"][b] == pytest.approx(k["escaped"][b] + dep + k["unscored"][b], rel=1e-10)
        # the track-length estimator deposits the same energy in expectation
    emitted = np.mean(k["emitted"])
    dep_tl = [float(np.dot(x, rho)) for x in k["kerma"]]
    m, s = mean_sem(np.array(dep_tl) + np.array(k["escaped"]))
    assert abs(m - emitted) < 3 * s + 1e-9 * emitted
    # same escaped energy as the array engine within statistics
    ma, sa = mean_sem(res["array"]["escaped"])
    mk, sk = mean_sem(k["escaped"])
    assert abs(ma - mk) < 3 * np.hypot(sa, sk)


def test_water_bone_slab(library):
    """A cortical-bone slab in water beside a point source: kernel == array voxel by voxel, with Dw,m."""
    g = GridGeometry.centered((6.4, 6.4, 6.4), (0.4, 0.4, 0.4))
    ph = VoxelPhantom.homogeneous(g, library["water"]).with_box(library["cortical_bone"], (-4, -4, 0.8), (4, 4, 1.6))
    src = PointSource((0.1, -0.05, 0.0), I125)
    res = {e: run_engine(ph, src, e, 15_000, seed=4, score_water=True) for e in ("array", "kernel")}
    assert_same_within_stats(res["array"]["kerma"], res["kernel"]["kerma"])
    assert_same_within_stats(res["array"]["water"], res["kernel"]["water"])
    # Dw,m differs from Dm,m in bone (the check would pass trivially if water were not scored)
    bone = (ph.material_index.reshape(-1) == 1)
    mk = res["kernel"]["kerma"].mean(0)
    mw = res["kernel"]["water"].mean(0)
    assert np.sum(mw[bone]) / np.sum(mk[bone]) < 0.5


@pytest.fixture(scope="module")
def seeded_runs(library):
    """Five 6711 seeds in a row in water (inter-seed shadowing), full and superposition, both engines."""
    model = load_builtin_seed("oncoseed_6711", library)
    g = GridGeometry.centered((1.4, 1.4, 3.0), (0.1, 0.1, 0.1))
    ph = VoxelPhantom.homogeneous(g, library["water"])
    pl = tuple(SeedPlacement((0.0, 0.0, z), (0.0, 0.0, 1.0)) for z in (-0.6, -0.1, 0.4, 0.9)) + \
        (SeedPlacement((0.35, 0.1, 0.0), (1.0, 0.0, 0.0)),)
    out = {}
    for mode in ("full", "superposition"):
        world = SeededVoxelWorld(ph, model, pl, library, NP, mode=mode, volume_samples=20_000)
        src = SeedSetSource(model, pl)
        for e in ("array", "kernel"):
            out[mode, e] = run_engine(world, src, e, 8_000, seed=21)
    return out


def test_multi_seed_phantom_agrees(seeded_runs):
    for mode in ("full", "superposition"):
        assert_same_within_stats(seeded_runs[mode, "array"]["kerma"], seeded_runs[mode, "kernel"]["kerma"],
                                 rel_cut=0.15)


def test_inter_seed_shadowing_in_kernel(seeded_runs):
    """With every seed present the dose is lower than in superposition (shadowing), by the same
    amount in both engines."""
    ratio = {}
    for e in ("array", "kernel"):
        full = seeded_runs["full", e]["kerma"].sum(axis=1)
        sup = seeded_runs["superposition", e]["kerma"].sum(axis=1)
        ratio[e] = mean_sem(full / sup)
    for e, (m, s) in ratio.items():
        assert m < 1.0 - 3 * s, (e, m, s)
    (ma, sa), (mk, sk) = ratio["array"], ratio["kernel"]
    assert abs(ma - mk) < 3 * np.hypot(sa, sk)


def test_same_seed_same_dose_and_threads(library):
    """Same key: bit-identical doses; 1 vs 2 OpenMP threads: equal to summation rounding."""
    g = GridGeometry.centered((3.0, 3.0, 3.0), (0.3, 0.3, 0.3))
    ph = VoxelPhantom.homogeneous(g, library["water"]).with_box(library["cortical_bone"], (-3, -3, 0.3), (3, 3, 0.9))
    src = PointSource((0.0, 0.0, 0.0), I125)
    tables = load_or_build_tables(list(ph.materials))
    doses = {}
    for threads in (1, 2, 2):
        tr = make_transport(ph, tables, NP, TransportSettings(engine="kernel", threads=threads, score_primary=True))
        sc = tr.run_batch(src, 30_000, np.random.SeedSequence(99))
        doses.setdefault(threads, []).append((sc.kerma.copy(), sc.primary.copy(), sc.steps, float(sc.escaped_energy)))
    a, b = doses[2]
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2:] == b[2:]
    one = doses[1][0]
    assert one[2] == a[2]                            # the same histories, step for step
    np.testing.assert_allclose(one[0], a[0], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(one[1], a[1], rtol=1e-12, atol=1e-300)


def test_batches_in_several_launches(library, monkeypatch):
    """A batch run in many launches (private tallies kept between them, reduced once) gives the one-
    launch result to rounding, and the same transport repeats a batch bit for bit."""
    import brachymc.mc.kernel_engine as ke

    g = GridGeometry.centered((3.0, 3.0, 3.0), (0.3, 0.3, 0.3))
    ph = VoxelPhantom.homogeneous(g, library["water"])
    src = PointSource((0.0, 0.0, 0.0), I125)
    tables = load_or_build_tables(list(ph.materials))
    tr = make_transport(ph, tables, NP, TransportSettings(engine="kernel", threads=2))
    one = tr.run_batch(src, 20_000, np.random.SeedSequence(5))
    monkeypatch.setattr(ke, "CPU_CHUNK_PER_THREAD", 1000)
    many = [tr.run_batch(src, 20_000, np.random.SeedSequence(5)) for _ in range(2)]
    np.testing.assert_array_equal(many[0].kerma, many[1].kerma)
    assert many[0].steps == one.steps
    np.testing.assert_allclose(many[0].kerma, one.kerma, rtol=1e-12, atol=1e-300)


def test_batches_are_independent_streams(library):
    g = GridGeometry.centered((3.0, 3.0, 3.0), (0.5, 0.5, 0.5))
    ph = VoxelPhantom.homogeneous(g, library["water"])
    tr = make_transport(ph, load_or_build_tables(list(ph.materials)), NP, TransportSettings(engine="kernel"))
    src = PointSource((0.0, 0.0, 0.0), Spectrum.monoenergetic(30.0))
    a = tr.run_batch(src, 5000, np.random.SeedSequence(1, spawn_key=(0,))).kerma
    b = tr.run_batch(src, 5000, np.random.SeedSequence(1, spawn_key=(1,))).kerma
    assert not np.array_equal(a, b)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.999


def test_silver_foil_fluorescence_escape_spectrum(library):
    """30 keV pencil beam on a thin silver foil in vacuo: the Ag K x-rays leaving per incident photon
    (the kernel's escape spectrum) agree with the array engine within statistics."""
    from brachymc.geometry.seed import ActiveRegion, SeedModel, Solid
    from brachymc.geometry.single_seed import SingleSeedWorld
    from brachymc.sources.simple import PencilBeam

    t = 2e-4
    foil = SeedModel(key="foil", name="foil", solids=(Solid("foil", "silver", role="capsule", r_max=1.0,
                                                            z_min=-t / 2, z_max=t / 2),),
                     active=(ActiveRegion("foil"),))
    world = SingleSeedWorld(foil, library, None, radius_cm=2.0, r_edges=[1.9, 2.0], cos_edges=[-1.0, 1.0],
                            backend=NP, volume_samples=10)
    tables = load_or_build_tables(list(world.materials))
    beam = PencilBeam((0.0, 0.0, -0.5), (0.0, 0.0, 1.0), Spectrum.monoenergetic(30.0))
    ag = next(c for c in tables.channels if c.z == 47 and c.shell == "K")
    lines = [e for e, p in zip(ag.line_energies, ag.line_probabilities) if p > 0.05]
    edges = np.sort(np.concatenate([[e - 1e-4, e + 1e-4] for e in lines]))
    n, batches = 200_000, 10
    counts = {}
    tr_a = make_transport(world, tables, NP, TransportSettings(engine="array"))
    per_a = []
    for b in range(batches):
        got = []
        world.score_escape = lambda xp, bank, esc, sc: got.append(bank["e"][esc & bank["scat"]].copy())
        tr_a.run_batch(beam, n, np.random.SeedSequence([5, b]))
        e = np.concatenate(got)
        per_a.append([np.sum(np.abs(e - x) < 1e-4) for x in lines])
    world.score_escape = None
    tr_k = make_transport(world, tables, NP, TransportSettings(engine="kernel"))
    tr_k.escape_spectrum_edges = edges
    per_k = []
    for b in range(batches):
        sc = tr_k.run_batch(beam, n, np.random.SeedSequence([6, b]))
        h = sc.extra["escape_spectrum"]
        per_k.append([h[2 * i] for i in range(len(lines))])   # bins [e - d, e + d)
    counts["array"], counts["kernel"] = np.array(per_a, float), np.array(per_k, float)
    ta, tk = counts["array"].sum(0), counts["kernel"].sum(0)
    assert np.all(ta > 100)
    z = (ta - tk) / np.sqrt(ta + tk)                 # Poisson counts
    assert np.all(np.abs(z) < 3.5), z


def test_tg43_single_seed_agrees(library):
    """One 6711 in water: Lambda, g_L at 0.5-5 cm and F(1 cm, 30-85 deg) from both engines agree within
    their combined uncertainties: Lambda within 3 sigma, and the 22 g_L and F values jointly (a
    chi-square of their z values, batch uncertainties with 20 batches: t variance 19/17), none beyond
    4.5 sigma. (Each of 22 values at 3 sigma would fail a correct pair of engines one run in ten.)"""
    from brachymc.validation.tg43_mc import TG43RunSettings, run_tg43

    model = load_builtin_seed("oncoseed_6711", library)
    res = {e: run_tg43(model, TG43RunSettings(histories=1_200_000, sk_histories=1_200_000, batches=20, seed=7,
                                             backend="numpy", engine=e)) for e in ("array", "kernel")}
    a, k = res["array"], res["kernel"]
    assert "kernel engine" in k.device and "array engine" in a.device

    def z(x, y, ux, uy):
        return (x - y) / np.hypot(ux * x, uy * y)

    assert abs(z(a.lambda_cGy_per_h_per_U, k.lambda_cGy_per_h_per_U, a.lambda_rel_unc, k.lambda_rel_unc)) < 3
    zs = [z(a.gL["value"][i], k.gL["value"][i], a.gL["rel_unc"][i], k.gL["rel_unc"][i])
          for i, r in enumerate(a.gL["r_cm"]) if 0.5 <= r <= 5.0 and r != 1.0]
    ir = a.F["r_cm"].index(1.0)
    zs += [z(a.F["value"][ir][j], k.F["value"][ir][j], a.F["rel_unc"][ir][j], k.F["rel_unc"][ir][j])
           for j, th in enumerate(a.F["theta_deg"]) if 30 <= th < 90]
    zs = np.array(zs)
    assert np.all(np.abs(zs) < 4.5), zs
    assert stats.chi2.sf(np.sum(zs * zs) / (19 / 17), zs.size) > 1e-3, zs


@pytest.mark.parametrize("key", sorted(seed_library()))
def test_air_kerma_strength_per_history_agrees(key, library):
    """S_K per history of every shipped seed model in vacuo: kernel == array within 3 combined sigma."""
    from brachymc.mc.air_kerma import air_kerma_strength

    model = load_builtin_seed(key, library)
    a = air_kerma_strength(model, 1_000_000, batches=10, seed=3, backend="numpy", engine="array")
    k = air_kerma_strength(model, 3_000_000, batches=10, seed=4, backend="numpy", engine="kernel")
    assert k.settings["engine"] == "kernel" and a.settings["engine"] == "array"
    sa, sk = a.rel_unc * a.sk_per_history_Gy_cm2, k.rel_unc * k.sk_per_history_Gy_cm2
    assert abs(a.sk_per_history_Gy_cm2 - k.sk_per_history_Gy_cm2) < 3 * np.hypot(sa, sk)
    assert k.mean_energy_leaving_kev == pytest.approx(a.mean_energy_leaving_kev, abs=0.1)
    # every detector of the scorer (WAFAC disc, CLRP square voxels, band), and their primary parts
    assert set(a.by_detector) == set(k.by_detector) and len(k.by_detector) >= 3
    for name, x in a.by_detector.items():
        y = k.by_detector[name]
        assert abs(x["value"] - y["value"]) < 3 * np.hypot(x["rel_unc"] * x["value"], y["rel_unc"] * y["value"]), name
        assert 0 < y["primary"] < y["value"]


def test_egsnrc_decay_laws_match_array_sampler(lib, library):
    """The CLRP-sampled 2301 (egs++ ring and spherical-shell laws): the kernel's decay positions follow
    the array engine's sampler (KS on the radius from the axis and on z)."""
    from brachymc.validation.clrp import with_egsnrc_sampling

    model = with_egsnrc_sampling(load_builtin_seed("best_2301", library))
    assert any(a.law != "uniform" for a in model.active)
    g = GridGeometry.centered((2.0, 2.0, 2.0), (0.25, 0.25, 0.25))
    ph = VoxelPhantom.homogeneous(g, library["water"])
    src = SeedSource(model)
    tr = KernelTransport(ph, load_or_build_tables(list(ph.materials)), NP, TransportSettings(engine="kernel"))
    n = 40_000
    k = _kernel_source_photons(lib, tr, src, n)
    a = src.sample(np, np.random.default_rng(2), n)
    for coord in (lambda p: np.hypot(p[0], p[1]), lambda p: p[2]):
        assert stats.ks_2samp(coord(a.position), coord(k[:, :3].T)).pvalue > 1e-3
    # and it is not the uniform sampler
    u = SeedSource(load_builtin_seed("best_2301", library)).sample(np, np.random.default_rng(3), n)
    assert stats.ks_2samp(np.hypot(u.position[0], u.position[1]), np.hypot(k[:, 0], k[:, 1])).pvalue < 1e-6
