"""The CLRP egs_brachy models of the shipped seeds: reference numbers and their decay sampling.

Facts from the public egs_brachy repository (clrp-code/egs_brachy, ``egs_brachy/lib/geometry/
sources/I125_LDR/<model>/<model>.geom`` and ``.shape``, commit cb9ed4b) and the CLRP TG-43 v2
paper (Safigholi et al., Med Phys 47 (2020) 4656):

* S_K per history, the ``# air kerma:`` line of each .geom header (Gy cm2 per emitted photon,
  NCRP-58 lines, 5 keV cutoff): scored in vacuo in CLRP's "WAFAC" voxel, 2.66 x 2.66 x 0.05 cm3
  of air at 10 cm on the transverse axis, and corrected to the axis with k_r2 = 1.0168 for an
  isotropic point source (egs_brachy user manual, sec. 9.1; Safigholi et al. 2020, sec. 2.A).
  brachymc's like-for-like detector is ``clrp_wafac`` (:data:`brachymc.mc.air_kerma.DETECTORS`).
* The decays: the .shape files give the volumes of the active layers as probabilities (uniform
  intent), but the egs++ shapes they use do not place points uniformly in a ring or a shell:
  ``egs_circle`` with an inner radius draws r = r_i + (r_o - r_i) sqrt(u) and
  ``egs_spherical_shell`` draws R = r_i + (r_o - r_i) u^(1/3) (EGSnrc, HEN_HOUSE/egs++/shapes).
  For the Best 2301 (ring 0.0125-0.0225 cm around a W rod, hemispherical shells at the ends) and
  the IsoSeed I25.S06 (Al2O3 ring 0.011-0.030 cm around an Au marker) this moves the activity
  outwards (mean radius 0.0192 vs 0.0180 cm, and 0.0237 vs 0.0220 cm), away from the marker
  and through less ceramic: more photons leave the seed. :func:`with_egsnrc_sampling` gives the
  brachymc model with that decay density (:class:`brachymc.geometry.seed.ActiveRegion` laws),
  i.e. the model CLRP actually simulated. The OncoSeed 6711's activity sits in a 1.75 um coating
  (``egs_conical_shell``), where the radial law inside the layer cannot matter.
"""

from __future__ import annotations

import dataclasses

from brachymc.errors import ConfigError
from brachymc.geometry.seed import ActiveRegion, SeedModel

#: S_K per history (Gy cm2) of the CLRP models, from the egs_brachy .geom headers ("clrp_wafac").
CLRP_SK_PER_HISTORY = {"oncoseed_6711": 3.7666e-14, "best_2301": 4.1352e-14, "isoseed_i25s06": 4.8312e-14}
CLRP_SK_DETECTOR = "clrp_wafac"

#: Decay-density laws of the egs++ shapes in the CLRP .shape files: active solid -> (law, r_inner, z0).
EGSNRC_SHAPE_LAWS = {
    "best_2301": {"matrix_cyl": ("egsnrc_circle", 0.0125, 0.0),
                  "matrix_cap_top": ("egsnrc_spherical_shell", 0.0125, 0.175),
                  "matrix_cap_bottom": ("egsnrc_spherical_shell", 0.0125, -0.175)},
    "isoseed_i25s06": {"ceramic": ("egsnrc_circle", 0.011, 0.0)},
    "oncoseed_6711": {},
    "oncoseed_6711_nrc": {},
}


def with_egsnrc_sampling(model: SeedModel) -> SeedModel:
    """``model`` with the decay density of the egs++ shapes of its CLRP .shape file."""
    laws = EGSNRC_SHAPE_LAWS.get(model.key)
    if laws is None:
        raise ConfigError(f"no CLRP decay-sampling description for seed model {model.key!r} "
                          f"(known: {', '.join(EGSNRC_SHAPE_LAWS)})")
    active = []
    for a in model.active:
        if a.solid in laws:
            law, r_inner, z0 = laws[a.solid]
            active.append(ActiveRegion(a.solid, a.weight, law=law, r_inner=r_inner, z0=z0))
        else:
            active.append(a)
    return dataclasses.replace(model, key=model.key, active=tuple(active), surfaces={})
