"""The DCM "spm12" convention observes BOLD with spm_gx_fmri's constants."""

import numpy as np

from biosim.inference.dcm.model import DCMStructure
from biosim.physics.hemodynamics import BOLDParams


def test_spm12_convention_uses_spm_gx_fmri_constants():
    s = DCMStructure(
        a=np.ones((2, 2)), b=np.zeros((1, 2, 2)), c=np.ones((2, 1)), tr=2.0, convention="spm12"
    )
    ours = [float(c) for c in s.bold_params(0.3).coefficients()]
    spm = [float(c) for c in BOLDParams.spm(0.3).coefficients()]
    np.testing.assert_allclose(ours, spm, rtol=1e-14, atol=1e-16)
    assert float(s.bold_params().resting_venous_volume) == 0.04
