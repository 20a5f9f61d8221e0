"""Balloon-Windkessel BOLD vs its linear (LTI) prediction.

Run: ``python examples/hemodynamics_nonlinearity.py`` (writes a PNG next to it
when matplotlib is installed).
"""

# %%
import numpy as np

import biosim  # noqa: F401  (float64)
from biosim.physics.hemodynamics import BalloonParams, BOLDParams, simulate_bold
from biosim.physics.hemodynamics.linearisation import linear_prediction

DT = 0.1
P, B = BalloonParams.spm(), BOLDParams.at_field(3.0)


def responses(amplitude=1.0):
    """Single stimulus, paired stimuli 2 s apart, and a 30 s block (BOLD fractions)."""
    n = 600
    single = np.zeros((n, 1))
    single[10:20] = amplitude
    paired = single.copy()
    paired[30:40] = amplitude
    block = np.zeros((n, 1))
    block[10:310] = 0.5 * amplitude
    out = {}
    for name, u in (("single", single), ("paired", paired), ("block", block)):
        out[name] = (
            np.asarray(simulate_bold(u, DT, P, B).bold[:, 0]),
            np.asarray(linear_prediction(u, DT, P, B)[:, 0]),
        )
    return out


# %%
if __name__ == "__main__":
    res = responses()
    for name, (y, y_lin) in res.items():
        print(f"{name:7s}: Balloon peak {100 * y.max():.2f} %, linear {100 * y_lin.max():.2f} %")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t = np.arange(600) * DT
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
        for ax, (name, (y, y_lin)) in zip(axes, res.items()):
            ax.plot(t, 100 * y, label="Balloon")
            ax.plot(t, 100 * y_lin, "--", label="linear")
            ax.set_title(name)
            ax.set_xlabel("time (s)")
        axes[0].set_ylabel("BOLD (%)")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig("hemodynamics_nonlinearity.png", dpi=90)
    except ImportError:
        pass
