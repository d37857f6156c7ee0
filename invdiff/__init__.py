"""invdiff: imaging inverse problems with diffusion priors.

Forward operators (``invdiff.operators``) meet posterior samplers (``invdiff.samplers``) through one
measurement-consistency interface, :class:`~invdiff.measurement.Measurement`.
"""

from invdiff.measurement import CapabilityError, Measurement

__version__ = "0.1.0"
__all__ = ["CapabilityError", "Measurement", "__version__"]
