"""Forward operators (installed as ``invdiff.operators``).

Every operator is a deepinv ``LinearPhysics`` / ``DecomposablePhysics``, so it works inside
:class:`invdiff.measurement.Measurement` and inside deepinv's own solvers alike. Parameters are
fixed at construction; a new parameter is a new operator (``with_mask``, ``replace``). Optional
capabilities (a replaceable mask, per-sample parameters, a support, acquirable candidates, exact
normal-equation blocks) are the protocols of :mod:`invdiff.operators.protocols`.
"""

from invdiff.operators.blur import Blur, CircularBlur
from invdiff.operators.ct import CT, FanBeamCT, ParallelBeamCT, ramp_filter
from invdiff.operators.ct_geometry import (FanBeamGeometry, ParallelBeamGeometry, limited_angle_angles,
                                           sparse_view_angles)
from invdiff.operators.downsampling import Downsampling
from invdiff.operators.espirit import espirit_maps
from invdiff.operators.fft import center_crop, fft2c, from_complex, ifft2c, rss, to_complex
from invdiff.operators.inpainting import Inpainting, box_mask, random_pixel_mask
from invdiff.operators.kernels import gaussian_kernel, motion_kernels
from invdiff.operators.masks import CartesianMask, MaskFunc, file_seed
from invdiff.operators.matrix import MatrixOperator
from invdiff.operators.mri import MultiCoilMRI, SingleCoilMRI
from invdiff.operators.variable_density import gaussian_mask, poisson_disc_mask

__all__ = [
    "CT", "Blur", "CartesianMask", "CircularBlur", "Downsampling", "FanBeamCT", "FanBeamGeometry", "Inpainting",
    "MaskFunc", "MatrixOperator", "MultiCoilMRI", "ParallelBeamCT", "ParallelBeamGeometry", "SingleCoilMRI",
    "box_mask", "center_crop", "espirit_maps", "fft2c", "file_seed", "from_complex", "gaussian_kernel", "gaussian_mask",
    "ifft2c", "limited_angle_angles", "motion_kernels", "poisson_disc_mask", "ramp_filter", "random_pixel_mask",
    "rss", "sparse_view_angles", "to_complex",
]
