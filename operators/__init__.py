"""Forward operators (installed as ``invdiff.operators``).

Every operator is a deepinv ``LinearPhysics`` / ``DecomposablePhysics``, so it works inside
:class:`invdiff.measurement.Measurement` and inside deepinv's own solvers alike.
"""

from invdiff.operators.matrix import MatrixOperator

__all__ = ["MatrixOperator"]
