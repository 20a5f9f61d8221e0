"""The protocol of an experiment: its blocks (or events) and conditions.

Built once from the validated ``[protocol]`` table; every stage that needs
the conditions, their boxcars or their events reads them from here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..io.bids import EventRow
from ..physics.hemodynamics.hrf import event_boxcar


@dataclasses.dataclass(frozen=True)
class Block:
    """A block (or an event, when ``duration`` is 0) of one condition; times in s."""

    onset: float
    duration: float
    condition: str


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Blocks of an experiment lasting ``duration`` s.

    Attributes
    ----------
    blocks : tuple of Block
        In the order of the specification.
    duration : float
        Length of the run, s.
    """

    blocks: tuple[Block, ...]
    duration: float

    @classmethod
    def from_spec(cls, spec: dict) -> Protocol:
        """The protocol of a validated experiment specification."""
        blocks = tuple(
            Block(float(b["onset"]), float(b["duration"]), b["condition"])
            for b in spec["protocol"]["blocks"]
        )
        return cls(blocks, float(spec["experiment"]["duration"]))

    @property
    def conditions(self) -> tuple[str, ...]:
        """Condition names, alphabetical: the column order of every design."""
        return tuple(sorted({b.condition for b in self.blocks}))

    def onsets(self, condition: str) -> np.ndarray:
        """Onsets (s) of ``condition``'s blocks, in protocol order."""
        return np.array([b.onset for b in self.blocks if b.condition == condition])

    @property
    def first_onset(self) -> float:
        return min(b.onset for b in self.blocks)

    def boxcars(self, dt: float, n_samples: int) -> np.ndarray:
        """Boxcars of the conditions on the grid ``k dt``, shape (n_samples, n_conditions).

        Built by :func:`biosim.physics.hemodynamics.hrf.event_boxcar` on the
        sample index, so onsets on the grid are exact: a block covers the
        samples in ``[onset, onset + duration)`` and an event (duration 0)
        one sample.
        """
        index = np.arange(n_samples + 1, dtype=float)  # one more: a block may end the run
        out = np.zeros((n_samples, len(self.conditions)))
        for j, cond in enumerate(self.conditions):
            sel = [b for b in self.blocks if b.condition == cond]
            on = np.round(np.array([b.onset for b in sel]) / dt, 6)
            length = np.round(np.array([b.duration for b in sel]) / dt, 6)
            box = np.asarray(event_boxcar(on, length, 1.0, index))[:n_samples]
            out[:, j] = box > 0.5  # overlapping blocks of one condition: still on
        return out

    def events(self) -> list[EventRow]:
        """The blocks as ``events.tsv`` rows."""
        return [EventRow(b.onset, b.duration, b.condition) for b in self.blocks]
