"""Physical constants (SI units, CODATA 2018) and unit conversions.

biosim works in SI units everywhere (m, s, T, V, A m, S/m, Pa, kg/m^3, K);
conversions happen only at I/O boundaries (mm in meshes and NIfTI affines,
ms in some file formats, fT in MEG displays).
"""

import math

#: Vacuum permeability, T m / A.
MU0 = 1.25663706212e-6
#: Vacuum permittivity, F / m.
EPS0 = 8.8541878128e-12
#: Proton gyromagnetic ratio, rad / (s T).
GAMMA_PROTON = 2.6752218744e8
#: Proton gyromagnetic ratio divided by 2 pi, Hz / T.
GAMMA_BAR_PROTON = GAMMA_PROTON / (2.0 * math.pi)
#: Boltzmann constant, J / K.
K_BOLTZMANN = 1.380649e-23
#: Zero Celsius in kelvin.
ZERO_CELSIUS = 273.15

# Conversion factors: multiply a value in the named unit to get SI.
MM = 1e-3
CM = 1e-2
MS = 1e-3
US = 1e-6
FT = 1e-15  # femtotesla
PT = 1e-12
UV = 1e-6  # microvolt
NAM = 1e-9  # nA m (dipole moment)
PPM = 1e-6
DEG = math.pi / 180.0
