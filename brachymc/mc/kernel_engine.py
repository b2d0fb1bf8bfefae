"""The kernel engine: one thread per photon history, the same CUDA C++ source on GPUs and CPUs.

:class:`KernelTransport` packs a world (voxel phantom, voxel phantom with seeds, or one seed in a
sphere), a source and the physics tables into the kernel's parameter block
(:mod:`brachymc.mc.kernel_params`) once, and runs batches of histories with the CPU build
(:func:`~brachymc.mc.kernel_build.cpu_library`, NumPy backend, OpenMP threads) or the GPU build
(:func:`~brachymc.mc.kernel_build.gpu_module`, CuPy backend). It answers the array engine's
interface: ``run_batch(source, n_histories, stream) -> BatchScores`` with the same raw tallies.

Random numbers: the batch's ``SeedSequence`` gives the 64-bit Philox key; history h of the batch
uses counter (n, h) (``kernels/philox.h``), so a history's random numbers do not depend on the
thread, core or device that transports it: the CPU and GPU builds follow the same histories.

Sums: on the GPU the tallies are double-precision atomics (their order, and so the last bits of a
sum, vary between runs). On the CPU each OpenMP thread takes a fixed block of histories and, by
default, adds into its own copy of the tallies, reduced in thread order: the same seed and thread
count give bit-identical doses, and a different thread count changes a dose by summation rounding
only. When the private copies would exceed ``PRIVATE_TALLY_LIMIT_BYTES`` the threads add into one
copy with atomics instead (rounding-level differences between runs, as on a GPU).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from brachymc.constants import ELECTRON_REST_ENERGY_KEV
from brachymc.errors import GeometryError, KernelBuildError, KernelUnsupportedError
from brachymc.geometry.seed import SeedModel, orthonormal_frame
from brachymc.geometry.seeded_phantom import SeededVoxelWorld
from brachymc.geometry.single_seed import SingleSeedWorld
from brachymc.geometry.world import VoxelWorld
from brachymc.mc.kernel_build import cpu_library, gpu_module
from brachymc.mc.kernel_params import ParamBlock, defines
from brachymc.mc.physics import PhysicsTables
from brachymc.mc.transport import BatchScores, TransportSettings, check_source_energies, checked_world
from brachymc.sources.seed_source import SeedSetSource, SeedSource
from brachymc.sources.simple import LineSource, PencilBeam, PointSource

log = logging.getLogger(__name__)

#: private CPU tally copies above this size fall back to atomic adds into one copy
PRIVATE_TALLY_LIMIT_BYTES = 2 << 30
#: histories per CPU thread and launch (a batch is run in launches of this many per thread, so that
#: progress is reported and Ctrl-C is seen between launches; a function of the batch size only)
CPU_CHUNK_PER_THREAD = 1 << 15
#: histories per GPU launch
GPU_CHUNK = 1 << 24
#: points of the kernel's table of each S_K detector's elevation weight g (linear interpolation)
AK_TABLE_POINTS = 4097
#: kernel limits (kernels/seed.h)
MAX_SOLIDS, MAX_CONES, MAX_SPHERES = 32, 4, 2
GPU_BLOCK = 128                 # threads per block (kernels/portability.h BMC_BLOCK)
#: enough blocks to fill an H100/H200 many times over; each thread then runs several histories
GPU_MAX_BLOCKS = 8192

_ACC = defines()


def default_threads() -> int:
    """Threads of the CPU build when ``TransportSettings.threads`` is 0: ``$BRACHYMC_THREADS`` (set for
    the workers of a local Dask cluster: cores / workers), else the cores this process may use (its
    CPU affinity, e.g. what a batch system granted)."""
    env = os.environ.get("BRACHYMC_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def seed_model_params(model: SeedModel) -> dict:
    """The kernel's description of a seed model's solids, surfaces and active regions."""
    solids = model.solids
    n = len(solids)
    if n > MAX_SOLIDS:
        raise KernelUnsupportedError(f"seed {model.key!r}: {n} solids; the kernel engine handles up to {MAX_SOLIDS}")
    box = np.empty((n, 4))
    cone = np.zeros((n, MAX_CONES, 2))
    sph = np.zeros((n, MAX_SPHERES, 2))
    counts = np.zeros((n, 2), dtype=np.int32)
    sub = np.zeros(n, dtype=np.int64)
    names = [s.name for s in solids]
    for i, s in enumerate(solids):
        if len(s.cones) > MAX_CONES or len(s.spheres) > MAX_SPHERES:
            raise KernelUnsupportedError(f"seed {model.key!r}: solid {s.name!r} has more than {MAX_CONES} cones or "
                              f"{MAX_SPHERES} spheres (kernel engine limit)")
        box[i] = (s.r_max * s.r_max if s.r_max is not None else np.inf,
                  s.r_min * s.r_min if s.r_min is not None else -np.inf,
                  s.z_min if s.z_min is not None else -np.inf,
                  s.z_max if s.z_max is not None else np.inf)
        for c, cn in enumerate(s.cones):
            cone[i, c] = (cn.k, cn.slope)
        for c, sp in enumerate(s.spheres):
            sph[i, c] = (sp.z0, sp.radius * sp.radius)
        counts[i] = (len(s.cones), len(s.spheres))
        for name in s.subtract:
            sub[i] |= 1 << names.index(name)
    # evaluation order: every solid after the solids it subtracts
    order: list[int] = []

    def visit(i: int, path: tuple = ()) -> None:
        if i in order:
            return
        if i in path:
            raise GeometryError(f"seed {model.key!r}: solids subtract each other in a cycle")
        for name in solids[i].subtract:
            visit(names.index(name), path + (i,))
        order.append(i)

    for i in range(n):
        visit(i)
    closure = np.zeros(n, dtype=np.int64)

    def close(i: int) -> int:
        m = 1 << i
        for name in solids[i].subtract:
            m |= close(names.index(name))
        return m

    for i in range(n):
        closure[i] = close(i)
    surf = model.surfaces
    weights = np.array([a.weight for a in model.active], float)
    cells, offsets, act_cell, act_solid, act_law = [], [0], [], [], []
    laws = {"uniform": 0, "egsnrc_circle": 1, "egsnrc_spherical_shell": 2}
    for a in model.active:
        law = getattr(a, "law", "uniform")
        if law not in laws:
            raise KernelUnsupportedError(f"seed {model.key!r}: decay law {law!r} is not in the kernel engine")
        act_law.append((laws[law], getattr(a, "r_inner", 0.0), getattr(a, "z0", 0.0)))
        i = model.solid_index(a.solid)
        prop = model._proposal(i)
        cells.append(np.asarray(prop["cells"], dtype=np.int32))
        offsets.append(offsets[-1] + cells[-1].size)
        act_cell.append((prop["zlo"], prop["dz"], prop["dr2"], prop["nr"]))
        act_solid.append(i)
    zlo, zhi, r_env = model.bounds()
    return dict(
        env_zlo=zlo, env_zhi=zhi, env_r2=r_env * r_env,
        n_solids=n, solid_box=box, solid_cone=cone, solid_sph=sph, solid_counts=counts, solid_sub=sub,
        solid_closure=closure,
        solid_order=np.array(order, dtype=np.int32),
        n_cyl=len(surf["cylinders"]), cyl_r2=np.array([r * r for r in surf["cylinders"]]),
        cyl_r=np.array(surf["cylinders"], float),
        n_planes=len(surf["planes"]), planes=np.array(surf["planes"], float),
        n_cone_surf=len(surf["cones"]), cone_surf=np.array(surf["cones"], float).reshape(-1, 2),
        n_sph_surf=len(surf["spheres"]),
        sph_surf=np.array([(z0, r * r) for z0, r in surf["spheres"]], float).reshape(-1, 2),
        sph_r=np.array([r for _z0, r in surf["spheres"]], float),
        n_active=len(model.active), active_cum=np.cumsum(weights / weights.sum())[:-1],
        active_solid=np.array(act_solid, dtype=np.int32), active_cell=np.array(act_cell, float),
        active_law=np.array(act_law, float),
        cell_offset=np.array(offsets, dtype=np.int64), cells=np.concatenate(cells),
    )


def energy_index(ln_e: np.ndarray, n_bins: int = 4096) -> dict:
    """Look-up table for the kernel's energy-grid search: for bins uniform in ln E, an interval at or
    below the one holding any ln E of the bin (the kernel then steps up, usually 0-1 times)."""
    lo, hi = float(ln_e[0]), float(ln_e[-1])
    inv = n_bins / (hi - lo)
    edges = lo + np.arange(n_bins) / inv
    margin = 1e-9 * max(1.0, abs(lo), abs(hi))          # a bin's lower edge, less the rounding of x
    idx = np.searchsorted(ln_e, edges - margin, side="right") - 1
    return dict(n_eidx=n_bins, eidx_lo=lo, eidx_inv=inv, eidx=idx.astype(np.int32))


def _frames(centers, axes) -> np.ndarray:
    """(n, 12) seed frames: centre, e1, e2, axis."""
    out = np.empty((len(centers), 12))
    for k, (c, a) in enumerate(zip(centers, axes)):
        e1, e2, ax = orthonormal_frame(a)
        out[k] = np.concatenate([np.asarray(c, float), e1, e2, ax])
    return out


class KernelTransport:
    """Transport of photons from a source through a world with the kernel engine.

    Args:
        world: a :class:`VoxelWorld`, :class:`SeededVoxelWorld`, :class:`SingleSeedWorld` (with an
            optional air-kerma scorer as ``world.score_escape``) or a :class:`VoxelPhantom`.
        tables: physics tables for the world's materials, in the same order.
        backend: NumPy (CPU build) or CuPy (GPU build).
        settings: :class:`TransportSettings` (``threads``: OpenMP threads of the CPU build).
    """

    engine = "kernel"

    def __init__(self, world, tables: PhysicsTables, backend, settings: TransportSettings):
        world = checked_world(world, tables, backend, settings)
        names = tuple(m.name for m in world.materials)
        self.world, self.backend, self.xp, self.settings = world, backend, backend.xp, settings
        self.gpu = backend.name == "cupy"
        if self.gpu:
            self._function = gpu_module().get_function("bmc_transport")
            self.threads = 1
        else:
            self._lib = cpu_library()
            self.threads = (settings.threads or default_threads()) if self._lib.openmp else 1
        self.tables = tables.to_backend(backend)
        self._base = ParamBlock(self.xp)
        self._pack_tables(tables, names)
        self._pack_world(world)
        self._source = None
        self._ak = None
        self._private = None
        #: energy bin edges (keV) of an optional spectrum of the photons that leave the world after
        #: interacting (scattered or fluorescence); None: off. Results: ``BatchScores.extra["escape_spectrum"]``.
        self.escape_spectrum_edges = None

    # ---------------------------------------------------------------------------------- packing
    def _pack_tables(self, tables: PhysicsTables, names) -> None:
        t = self.tables
        n_m, n_e = t.ln_mu.shape
        self._base.set(
            cutoff_kev=self.settings.cutoff_kev, mec2_kev=ELECTRON_REST_ENERGY_KEV,
            n_mat=n_m, n_e=n_e, n_chan=t.fl_cum.shape[-1], n_line=t.line_cum.shape[-1],
            n_s=t.compton_q.shape[1], n_q=t.compton_q.shape[2],
            water_index=names.index("water") if "water" in names else -1,
            sample_ln_e0=t.sample_ln_e0, sample_dln=t.sample_dln,
            ln_e=t.ln_e, inv_dln=t.inv_dln, **energy_index(self.backend.asnumpy(t.ln_e)),
            ln_mu=t.ln_mu, ln_muen=t.ln_muen, p_photo=t.p_photo, p_incoh=t.p_incoh, fl_cum=t.fl_cum, fl_channel=t.fl_channel, line_cum=t.line_cum,
            line_energy=t.line_energy, compton_q=t.compton_q, compton_pdf=t.compton_pdf,
            rayleigh_q=t.rayleigh_q, rayleigh_pdf=t.rayleigh_pdf,
            score_primary=self.settings.score_primary, score_collision=self.settings.score_collision,
            score_water=self.settings.score_water,
        )

    def _model_params(self, model: SeedModel, solid_mat, solid_rho) -> dict:
        p = seed_model_params(model)
        p.update(solid_mat=self.backend.asnumpy(solid_mat).astype(np.int32),
                 solid_rho=self.backend.asnumpy(solid_rho).astype(np.float64))
        return p

    def _pack_world(self, world) -> None:
        b = self._base
        self.model = None
        b.set(n_scores=world.n_scores)
        if isinstance(world, SingleSeedWorld):
            self.model = world.model
            b.set(world_kind=1, seed_radius=world.seed_radius, world_radius=world.radius,
                  medium_mat=0, medium_rho=world.medium_density,
                  n_spheres=int(world._spheres.shape[0]), spheres=world._spheres,
                  n_cones=int(world._cones.shape[0]), cones=world._cones,
                  n_r=world.n_r, n_c=world.n_c, r_edges=world.r_edges, cos_edges=world.cos_edges,
                  **self._model_params(world.model, world._solid_mat, world._solid_rho))
            return
        if not isinstance(world, VoxelWorld):
            raise KernelUnsupportedError(f"the kernel engine has no description of a {type(world).__name__}; "
                                         "use engine = 'array'")
        g = world.geom
        b.set(world_kind=0, nx=g.nx, ny=g.ny, nz=g.nz, ox=g.origin[0], oy=g.origin[1], oz=g.origin[2],
              sx=g.spacing[0], sy=g.spacing[1], sz=g.spacing[2],
              vox=self._voxel_words(world))
        if isinstance(world, SeededVoxelWorld):
            self.model = world.model
            b.set(n_seeds=len(world.placements), max_per_voxel=world.max_per_voxel,
                  superposition=world.mode == "superposition", flag_row=world._flag_row,
                  flag_table=world._flag_table.astype(self.xp.int32),
                  seed_frame=_frames(world.centers, world.axes), seed_radius=world.seed_radius,
                  **self._model_params(world.model, world._solid_mat, world._solid_rho))

    def _voxel_words(self, world):
        """One 64-bit word per voxel: its density (float32 bits, exact: phantoms hold float32) and its
        material with a flag for voxels that meet a seed (one memory access per voxel step)."""
        xp = self.xp
        rho32 = world.rho.astype(xp.float32)
        if not bool(xp.all(rho32.astype(xp.float64) == world.rho)):
            raise KernelUnsupportedError("voxel densities must be float32 values for the kernel engine")
        if len(world.materials) > 0xFFFF:
            raise KernelUnsupportedError(f"{len(world.materials)} materials: the kernel engine handles up to 65535")
        hi = world.mat.astype(xp.int64)
        if isinstance(world, SeededVoxelWorld):
            hi = hi | xp.where(world._flag_row >= 0, _ACC["BMC_VOX_SEEDS"], 0).astype(xp.int64)
        return (hi << 32) | rho32.view(xp.uint32).astype(xp.int64)

    def _pack_source(self, source) -> None:
        if source is self._source:           # packed already (the block keeps the reference alive)
            return
        b = self._base
        spec = source.spectrum
        b.set(n_spec=len(spec.energies_kev), spec_energy=np.asarray(spec.energies_kev, float),
              spec_cum=np.cumsum(spec.probabilities)[:-1])
        if isinstance(source, (SeedSource, SeedSetSource)):
            if self.model is not None and source.model != self.model:
                raise KernelUnsupportedError(f"the source's seed model {source.model.key!r} differs from the world's "
                                  f"{self.model.key!r}; the kernel engine needs one model")
            if self.model is None:
                b.set(**self._model_params(source.model, np.zeros(len(source.model.solids), np.int32),
                                           np.zeros(len(source.model.solids))))
            if isinstance(source, SeedSource):
                frames, cum = _frames([source.center], [source.axis]), np.zeros(0)
            else:
                frames = np.concatenate([source._centers, source._frames.reshape(-1, 9)], axis=1)
                cum = np.cumsum(source._prob)[:-1]
            b.set(source_kind=3, n_src_seeds=frames.shape[0], src_seed_frame=frames, src_seed_cum=cum)
        elif isinstance(source, PencilBeam):
            d = np.asarray(source.direction, float)
            d = d / np.linalg.norm(d)
            b.set(source_kind=2, src_ax=source.position[0], src_ay=source.position[1], src_az=source.position[2],
                  src_bx=d[0], src_by=d[1], src_bz=d[2])
        elif isinstance(source, (PointSource, LineSource)):
            a = source.position if isinstance(source, PointSource) else source.start
            e = a if isinstance(source, PointSource) else source.end
            b.set(source_kind=0 if isinstance(source, PointSource) else 1, src_ax=a[0], src_ay=a[1], src_az=a[2],
                  src_bx=e[0], src_by=e[1], src_bz=e[2])
        else:
            raise KernelUnsupportedError(f"the kernel engine has no description of a {type(source).__name__} "
                                         "source; use engine = 'array'")
        self._source = source

    def _pack_escape_scorer(self) -> None:
        scorer = getattr(self.world, "score_escape", None)
        if scorer is self._ak:
            return
        if getattr(self.world, "score_interaction", None) is not None:
            raise KernelUnsupportedError("the world has an interaction hook (score_interaction), which only the "
                                         "array engine calls; use engine = 'array'")
        if scorer is None:
            self._base.set(score_air_kerma=0)
        elif all(hasattr(scorer, k) for k in ("detectors", "cutoff", "air_index")):
            dets = tuple(scorer.detectors)
            if len(dets) > _ACC["BMC_MAX_AK"]:
                raise KernelUnsupportedError(f"{len(dets)} S_K detectors; the kernel engine scores up to "
                                             f"{_ACC['BMC_MAX_AK']}")
            n_tab = AK_TABLE_POINTS
            det = np.zeros((len(dets), 3))
            tab = np.zeros((len(dets), n_tab))
            for k, d in enumerate(dets):
                hw = d.half_width_cm * 1.0000001 + 1e-12        # the array scorer's acceptance
                zh = np.linspace(-hw, hw, n_tab)
                with np.errstate(invalid="ignore", divide="ignore"):
                    g = d.elevation_density(np, np.arctan(zh / d.distance_cm))
                tab[k] = np.nan_to_num(g) / (2.0 * np.pi)
                det[k] = (d.distance_cm, hw, (n_tab - 1) / (2.0 * hw))
            self._base.set(score_air_kerma=len(dets), ak_air_mat=scorer.air_index, ak_cutoff=scorer.cutoff,
                           n_ak_tab=n_tab, ak_det=det, ak_gtab=tab)
        else:
            raise KernelUnsupportedError(f"the kernel engine cannot score escapes with {type(scorer).__name__}; "
                                         "use engine = 'array'")
        self._ak = scorer

    # ---------------------------------------------------------------------------------- running
    def new_scores(self) -> BatchScores:
        xp, n, s = self.xp, self.world.n_scores, self.settings
        return BatchScores(
            kerma=xp.zeros(n, dtype=xp.float64),
            primary=xp.zeros(n, dtype=xp.float64) if s.score_primary else None,
            collision=xp.zeros(n, dtype=xp.float64) if s.score_collision else None,
            water=xp.zeros(n, dtype=xp.float64) if s.score_water else None,
        )

    def check_source(self, source) -> None:
        self.world.check_source(source)
        check_source_energies(source, self.settings.cutoff_kev, self.tables.emax_kev)

    def _private_buffer(self, n: int) -> np.ndarray:
        """The threads' private tallies: allocated (zeroed) once and kept, since every batch's final
        reduction leaves them zero again (no page faults or clearing per batch)."""
        buf = getattr(self, "_private", None)
        if buf is None or buf.size != n:
            buf = self._private = np.zeros(n)
        return buf

    @staticmethod
    def batch_key(stream: np.random.SeedSequence) -> tuple[int, int]:
        """The Philox key (two 32-bit words) of a batch's random stream."""
        k = stream.generate_state(2, dtype=np.uint32)
        return int(k[0]), int(k[1])

    def run_batch(self, source, n_histories: int, stream: np.random.SeedSequence,
                  scores: BatchScores | None = None, on_progress=None) -> BatchScores:
        """Transport ``n_histories`` source photons and return the raw tallies (as the array engine)."""
        self.check_source(source)
        self._pack_source(source)
        self._pack_escape_scorer()
        sc = scores if scores is not None else self.new_scores()
        n_total = int(n_histories)
        key0, key1 = self.batch_key(stream)
        b = self._base
        b.set(key0=key0, key1=key1, kerma=sc.kerma, primary=sc.primary, collision=sc.collision, water=sc.water)
        nacc = _ACC["BMC_NACC"]
        threads = self.threads
        if self.gpu:
            acc = self.xp.zeros(nacc, dtype=self.xp.float64)
            chunk = GPU_CHUNK
            b.set(private_tallies=0, private_buf=None, private_stride=0)
        else:
            acc = np.zeros((threads, nacc))
            chunk = CPU_CHUNK_PER_THREAD * threads
            n_tallies = sum(x is not None for x in (sc.kerma, sc.primary, sc.collision, sc.water))
            stride = n_tallies * self.world.n_scores
            private = (threads - 1) * stride * 8 <= PRIVATE_TALLY_LIMIT_BYTES
            if threads > 1 and not private:
                log.warning("private tallies for %d threads would need %.1f GiB: using atomic adds (doses then "
                            "vary between runs in the last bits)", threads, (threads - 1) * stride * 8 / 2**30)
            b.set(private_tallies=private, private_stride=stride,
                  private_buf=self._private_buffer((threads - 1) * stride) if private and threads > 1 else None)
        b.set(acc=acc)
        hist = None
        if self.escape_spectrum_edges is not None:
            edges = np.asarray(self.escape_spectrum_edges, float)
            hist = self.xp.zeros(edges.size - 1)
            b.set(n_esc_bins=edges.size - 1, esc_edges=edges, esc_hist=hist)
        else:
            b.set(n_esc_bins=0, esc_edges=None, esc_hist=None)
        done = 0
        try:
            while done < n_total:
                n = min(chunk, n_total - done)
                b.set(n_histories=n, first_history=done)
                if self.gpu:
                    dev = b.device_copy()
                    blocks = max(1, min(-(-n // GPU_BLOCK), GPU_MAX_BLOCKS))
                    self._function((blocks,), (GPU_BLOCK,), (dev,))
                else:
                    self._lib.run(b.address(), threads, reduce=done + n >= n_total)
                done += n
                if on_progress is not None:
                    on_progress(n)
        except BaseException:
            if self._private is not None:      # an abandoned batch must not leave partial sums behind
                self._private[:] = 0.0
            raise
        a = self.backend.asnumpy(b.get("acc")).reshape(-1, nacc)
        tot = np.zeros(nacc)
        for row in a:                       # thread order: a reproducible sum
            tot += row
        if tot[_ACC["BMC_ACC_LOST"]] > 0:
            log.warning("%d photons stopped by the kernel's step limit", int(tot[_ACC["BMC_ACC_LOST"]]))
        sc.emitted_energy = sc.emitted_energy + tot[_ACC["BMC_ACC_EMITTED"]]
        sc.escaped_energy = sc.escaped_energy + tot[_ACC["BMC_ACC_ESCAPED"]]
        sc.escaped_primary = sc.escaped_primary + tot[_ACC["BMC_ACC_ESCAPED_PRIMARY"]]
        sc.absorbed_local = sc.absorbed_local + tot[_ACC["BMC_ACC_LOCAL"]]
        sc.unscored_energy = sc.unscored_energy + tot[_ACC["BMC_ACC_UNSCORED"]]
        sc.steps += int(tot[_ACC["BMC_ACC_STEPS"]])
        sc.histories += n_total
        sc.extra["lost"] = sc.extra.get("lost", 0.0) + tot[_ACC["BMC_ACC_LOST"]]
        if self._ak is not None:
            for name, slot in (("escaped_n", "BMC_ACC_ESC_N"), ("escaped_e", "BMC_ACC_ESC_E"),
                               ("escaped_n5", "BMC_ACC_ESC_N5"), ("escaped_e5", "BMC_ACC_ESC_E5")):
                sc.extra[name] = sc.extra.get(name, 0.0) + tot[_ACC[slot]]
            for k, d in enumerate(self._ak.detectors):
                for name, off in ((f"air_kerma_raw:{d.name}", 0), (f"air_kerma_primary_raw:{d.name}", 1)):
                    sc.extra[name] = sc.extra.get(name, 0.0) + tot[_ACC["BMC_ACC_AK"] + 2 * k + off]
        if hist is not None:
            prev = sc.extra.get("escape_spectrum")
            h = self.backend.asnumpy(hist)
            sc.extra["escape_spectrum"] = h if prev is None else prev + h
        # the block's output pointers refer to this batch's arrays: drop them
        b.set(kerma=None, primary=None, collision=None, water=None, private_buf=None, acc=None, esc_hist=None)
        return sc

    def describe(self) -> dict:
        if self.gpu:
            return {"engine": "kernel", "build": "gpu (NVRTC via CuPy)"}
        return {"engine": "kernel", "build": f"cpu ({self._lib.compiler_version or self._lib.compiler})",
                "threads": self.threads, "openmp": self._lib.openmp}


__all__ = ["KernelTransport", "seed_model_params", "default_threads", "KernelBuildError"]
