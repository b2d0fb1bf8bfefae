"""Physical constants and unit conversions (CODATA 2018).

Internal units: cm, g/cm3, keV. Doses: keV/g inside the tallies, Gy at the edges.
"""

#: Electron rest energy m_e c^2 in keV.
ELECTRON_REST_ENERGY_KEV = 510.99895000

#: h c in keV * Angstrom; x = sin(theta/2)/lambda = E sin(theta/2) / HC (1/Angstrom).
HC_KEV_ANGSTROM = 12.398419843320026

#: 1 keV/g expressed in Gy (J/kg): 1.602176634e-16 J / 1e-3 kg.
KEV_PER_G_TO_GY = 1.602176634e-13

#: I-125 half-life in days (TG-43U1).
I125_HALF_LIFE_DAYS = 59.40
