"""The lead-field interface shared by sphere, BEM and FEM forward models.

A forward model maps source positions (n_sources, 3) in m to a gain array
``G`` of shape (n_channels, n_sources, 3): the data of channel c produced by a
unit dipole (1 A m) along x, y, z at each source, in V/(A m) for EEG and
T/(A m) (T/m per A m for planar gradiometers) for MEG.  Data for dipole
moments ``Q`` (n_sources, 3[, n_times]) are ``einsum("csk,sk...->c...", G, Q)``.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import jax.numpy as jnp

from ..._core.errors import ParameterError
from ..._core.validation import check_all_finite
from .sensors import EEGSensors, MEGSensors
from .sphere_eeg import SphereHead, eeg_gain
from .sphere_meg import meg_gain


class ForwardModel(Protocol):
    """Anything with channel names/kinds and a ``gain(positions)`` method."""

    def gain(self, positions) -> jnp.ndarray: ...

    @property
    def channel_names(self) -> tuple: ...

    @property
    def channel_kinds(self) -> tuple: ...


def fixed_orientation(gain, normals):
    """Project a free-orientation gain (C, S, 3) onto unit normals (S, 3) -> (C, S)."""
    check_all_finite(gain=gain, normals=normals)
    normals = jnp.asarray(normals)
    norms = jnp.linalg.norm(normals, axis=-1, keepdims=True)
    return jnp.einsum("csk,sk->cs", gain, normals / norms)


def apply_moments(gain, moments):
    """Channel data from dipole moments (S, 3) or (S, 3, T) in A m."""
    check_all_finite(gain=gain, moments=moments)
    return jnp.einsum("csk,sk...->c...", gain, jnp.asarray(moments))


@dataclasses.dataclass(frozen=True)
class SphereForward:
    """Forward model of a multi-shell sphere for EEG and/or MEG.

    EEG uses the exact multi-shell series (referenced as the electrodes
    specify); MEG uses Sarvas' formula (independent of the conductivities).
    Channels are EEG first, then MEG.
    """

    head: SphereHead
    eeg: EEGSensors | None = None
    meg: MEGSensors | None = None
    n_terms: int | None = None

    def __post_init__(self):
        if self.eeg is None and self.meg is None:
            raise ParameterError("eeg/meg", None, "at least one sensor set")

    @property
    def channel_names(self):
        return (self.eeg.names if self.eeg else ()) + (self.meg.names if self.meg else ())

    @property
    def channel_kinds(self):
        return (("eeg",) * self.eeg.n_channels if self.eeg else ()) + (
            self.meg.kinds if self.meg else ()
        )

    def gain(self, positions):
        parts = []
        if self.eeg is not None:
            g = eeg_gain(self.head, self.eeg.positions, positions, self.n_terms)
            parts.append(jnp.einsum("ij,jsk->isk", jnp.asarray(self.eeg.reference_matrix()), g))
        if self.meg is not None:
            parts.append(meg_gain(self.meg, positions, self.head.center))
        return jnp.concatenate(parts, axis=0)
