"""Forward operators (installed as ``invdiff.operators``).

Every operator is a deepinv ``LinearPhysics`` / ``DecomposablePhysics``, so it works inside
:class:`invdiff.measurement.Measurement` and inside deepinv's own solvers alike.
"""

from invdiff.operators.masks import CartesianMask, MaskFunc, file_seed
from invdiff.operators.matrix import MatrixOperator

__all__ = ["CartesianMask", "MaskFunc", "MatrixOperator", "file_seed"]
