// params.h -- everything one kernel launch reads and writes, in one struct of 8-byte fields.
//
// This struct is the single description of the kernel's inputs: the Python side
// (brachymc/mc/kernel_params.py) reads the field list from this file, fills a buffer of the same
// layout and hands its address to the kernel (a host address for the CPU build, a device address
// for the GPU build). Every field is 8 bytes (long long, double or a pointer), so the layout has no
// padding and is the same for both compilers. Units: cm, g/cm3, keV; tables as in mc/physics.py.
// Optional arrays are null pointers; flags are long long 0/1.
#pragma once

struct BmcParams {
    // ---- the launch ---------------------------------------------------------------------------
    long long n_histories;         // histories of this launch
    long long first_history;       // number of the first one (the Philox counter of history h)
    long long key0;                // Philox key (low 32 bits used): from the batch's SeedSequence
    long long key1;
    long long score_primary;       // tally the primary (unscattered) part too
    long long score_collision;     // tally the collision (interaction) estimator too
    long long score_water;         // tally Dw,m: the same tracks with (mu_en/rho) of water
    long long private_tallies;     // CPU: thread t > 0 adds into its own copy (deterministic sums)
    double cutoff_kev;             // photons below it deposit locally
    double mec2_kev;               // electron rest energy (constants.ELECTRON_REST_ENERGY_KEV)
    // ---- physics tables (mc/physics.py DeviceTables, C order) -----------------------------------
    long long n_mat;               // materials of the world, in its order
    long long n_e;                 // energy grid points (edges duplicated)
    long long n_chan;              // fluorescence channels per material (fl_cum last axis)
    long long n_line;              // lines per channel
    long long n_s;                 // energies of the angular quantile tables
    long long n_q;                 // quantiles per table
    long long water_index;         // material index of water for Dw,m (-1: none)
    double sample_ln_e0;           // ln E of the first quantile-table energy
    double sample_dln;
    const double* ln_e;            // (n_e)
    long long n_eidx;              // bins of the look-up table of ln E positions
    double eidx_lo;                // ln E of its first bin
    double eidx_inv;               // bins per unit ln E
    const int* eidx;               // (n_eidx) a grid interval at or below each bin's lower edge
    const double* inv_dln;         // (n_e)  1 / (ln E[i+1] - ln E[i]), 0 for zero-width intervals
    const double* ln_mu;           // (n_mat, n_e) ln mu/rho
    const double* ln_muen;         // (n_mat, n_e) ln mu_en/rho
    const double* p_photo;         // (n_mat, n_e) photoelectric / total
    const double* p_incoh;         // (n_mat, n_e) incoherent / total
    const double* fl_cum;          // (n_mat, n_e, n_chan) cumulative channel probability
    const int* fl_channel;         // (n_mat, n_chan) global channel (-1: padding)
    const double* line_cum;        // (n_channels, n_line)
    const double* line_energy;     // (n_channels, n_line) keV
    const double* compton_q;       // (n_mat, n_s, n_q) cos theta quantiles
    const double* compton_pdf;
    const double* rayleigh_q;
    const double* rayleigh_pdf;
    // ---- world ----------------------------------------------------------------------------------
    long long world_kind;          // 0: voxel phantom (with or without seeds); 1: one seed in a sphere
    long long n_scores;            // scoring bins
    // voxel phantom: grid (x fastest), material and density of each voxel
    long long nx;
    long long ny;
    long long nz;
    double ox;                     // low corner (cm)
    double oy;
    double oz;
    double sx;                     // voxel size (cm)
    double sy;
    double sz;
    const long long* vox;          // (nz*ny*nx) per voxel: low 32 bits the density (float32 bits,
                                   // g/cm3), high 32 bits the material | BMC_VOX_SEEDS if seeds meet it
    // seeds in the phantom (n_seeds = 0: none)
    long long n_seeds;
    long long max_per_voxel;       // columns of flag_table
    long long superposition;       // a photon sees only the seed that emitted it
    const int* flag_row;           // (n_voxels) row of flag_table, -1: no seed meets the voxel
    const int* flag_table;         // (rows, max_per_voxel) seed indices, -1: padding
    const double* seed_frame;      // (n_seeds, 12): centre, e1, e2, axis
    double seed_radius;            // bounding sphere of a seed about its centre (cm)
    // one seed at the origin along z in a sphere of medium, (r, cos theta) bins
    long long n_spheres;
    long long n_cones;
    long long n_r;
    long long n_c;
    long long medium_mat;          // material index of the medium (density may be 0: vacuum)
    double medium_rho;
    double world_radius;
    const double* spheres;         // (n_spheres) ascending radii that stop a step
    const double* cones;           // (n_cones) ascending cos theta of the bin cones
    const double* r_edges;         // (n_r + 1)
    const double* cos_edges;       // (n_c + 1)
    // air kerma in vacuo on a cylinder band (mc/air_kerma.py AirKermaScorer)
    long long score_air_kerma;
    long long ak_air_mat;
    double ak_distance;
    double ak_half_height;
    double ak_cutoff;
    // spectrum of the photons that leave the world after interacting (n_esc_bins = 0: off)
    long long n_esc_bins;
    const double* esc_edges;       // (n_esc_bins + 1) keV
    // ---- seed model (geometry/seed.py SeedModel), up to 32 solids ---------------------------------
    long long n_solids;
    long long n_cyl;
    long long n_planes;
    long long n_cone_surf;
    long long n_sph_surf;
    double env_zlo;                // the seed's envelope: the cylinder r <= env_r, env_zlo <= z <= env_zhi
    double env_zhi;                // that holds every solid (SeedModel.bounds)
    double env_r2;
    const double* solid_box;       // (n_solids, 4): r_max^2, r_min^2, z_min, z_max (+-inf: none)
    const double* solid_cone;      // (n_solids, 4, 2): (k, slope) of r <= k + slope z
    const double* solid_sph;       // (n_solids, 2, 2): (z0, radius^2)
    const int* solid_counts;       // (n_solids, 2): cones, spheres
    const long long* solid_sub;    // (n_solids) bit mask of the solids it subtracts
    const long long* solid_closure;// (n_solids) bit mask of the solid and all it subtracts, recursively
    const int* solid_order;        // (n_solids) evaluation order (subtracted solids first)
    const int* solid_mat;          // (n_solids) material index in the world
    const double* solid_rho;       // (n_solids) g/cm3
    const double* cyl_r2;          // (n_cyl) radius^2 of every cylinder surface
    const double* cyl_r;           // (n_cyl) its radius
    const double* planes;          // (n_planes) z of every plane
    const double* cone_surf;       // (n_cone_surf, 2) (k, slope)
    const double* sph_surf;        // (n_sph_surf, 2) (z0, radius^2)
    const double* sph_r;           // (n_sph_surf) radius
    // ---- source ---------------------------------------------------------------------------------
    long long source_kind;         // 0 point, 1 line, 2 pencil beam, 3 seeds
    long long n_spec;              // spectral lines
    const double* spec_energy;     // (n_spec) keV
    const double* spec_cum;        // (n_spec - 1) cumulative probability
    double src_ax;                 // point / line start / pencil position (cm)
    double src_ay;
    double src_az;
    double src_bx;                 // line end, or pencil direction
    double src_by;
    double src_bz;
    long long n_src_seeds;         // seeds of a seed source (their frames in src_seed_frame)
    const double* src_seed_frame;  // (n_src_seeds, 12): centre, e1, e2, axis
    const double* src_seed_cum;    // (n_src_seeds - 1) cumulative probability of each seed
    long long n_active;            // active solids
    const double* active_cum;      // (n_active - 1) cumulative weight
    const int* active_solid;       // (n_active) solid index
    const double* active_cell;     // (n_active, 4): z_lo, dz, dr2, nr of its (z, r^2) cell grid
    const long long* cell_offset;  // (n_active + 1) into cells
    const int* cells;              // flat (iz * nr + ir) cells that meet the active solid
    // ---- outputs --------------------------------------------------------------------------------
    double* kerma;                 // (n_scores) raw track-length tally: sum w E (mu_en/rho) l
    double* primary;               // (n_scores) or null
    double* collision;             // (n_scores) or null
    double* water;                 // (n_scores) or null
    double* private_buf;           // CPU private tallies: (threads - 1) x private_stride, or null
    long long private_stride;      // doubles per thread: n_scores x the tallies in use
    double* acc;                   // (threads, BMC_NACC) energy bookkeeping per thread (GPU: 1 row)
    double* esc_hist;              // (n_esc_bins) weight of escaping scattered/fluorescence photons
};

#define BMC_VOX_SEEDS 1073741824   // 1 << 30
#define BMC_VOX_MAT 65535          // 0xffff

// energy bookkeeping, per thread (keV unless noted)
#define BMC_ACC_EMITTED 0
#define BMC_ACC_ESCAPED 1
#define BMC_ACC_ESCAPED_PRIMARY 2
#define BMC_ACC_LOCAL 3
#define BMC_ACC_UNSCORED 4
#define BMC_ACC_STEPS 5          // geometry steps (count)
#define BMC_ACC_AIR_KERMA 6      // air-kerma scorer: sum w E (mu_en/rho)_air / cos a
#define BMC_ACC_ESC_N 7          // photons escaping (weight)
#define BMC_ACC_ESC_E 8
#define BMC_ACC_ESC_N5 9         // ... above the air-kerma cutoff
#define BMC_ACC_ESC_E5 10
#define BMC_ACC_LOST 11          // photons stopped by the step limit (none expected)
#define BMC_NACC 12
