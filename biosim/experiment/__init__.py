"""The experiment application: a TOML specification in, a dataset out.

Modules, in the order data flows through them:

* :mod:`~biosim.experiment.keys`: checking TOML tables (types, ranges, unknown keys);
* :mod:`~biosim.experiment.spec`: loading and validating an experiment;
* :mod:`~biosim.experiment.protocol`: the conditions and blocks of the design;
* :mod:`~biosim.experiment.subject`: the virtual subject (head model, region dipoles);
* :mod:`~biosim.experiment.activity`: brain activity driven by the protocol;
* :mod:`~biosim.experiment.devices`: device plug-ins (MRI, EEG, MEG, ...);
* :mod:`~biosim.experiment.analysis`: analyses run inside ``biosim run`` (DCM);
* :mod:`~biosim.experiment.report`: figures of the run;
* :mod:`~biosim.experiment.estimate`: memory, output size and time a spec will need;
* :mod:`~biosim.experiment.pipeline`: :func:`run_experiment`;
* :mod:`~biosim.experiment.sweep`: many runs of one experiment.
"""

from .devices import register_device
from .pipeline import run_experiment
from .spec import describe, list_examples, load_experiment, validate_spec, with_seed

__all__ = [
    "describe",
    "list_examples",
    "load_experiment",
    "register_device",
    "run_experiment",
    "validate_spec",
    "with_seed",
]
