"""Problems: the one place inverse problems are built (:class:`Problem`), and the sampler defaults per family.

* :mod:`~invdiff.problems.base`: :class:`Problem` (measurement, target, ``to_image``, baseline, family,
  prior, info);
* :mod:`~invdiff.problems.spec`: :class:`ProblemSpec`, how a measurement is formed from an input;
* :mod:`~invdiff.problems.sources`: inputs (fastMRI files, volumes, offline anatomy, phantoms) opened as
  a :class:`ProblemSource` that builds a problem per slice group;
* :mod:`~invdiff.problems.fastmri`: a multi-coil fastMRI volume as a problem;
* :mod:`~invdiff.problems.image_tasks`: the named validation/test tasks;
* :mod:`~invdiff.problems.gmm`: the Gaussian-mixture exact-posterior suite;
* :mod:`~invdiff.problems.active_mri`: active subsampling of a fastMRI volume beside fixed masks;
* :mod:`~invdiff.problems.defaults`: tuned sampler settings per family, as data with provenance.
"""

from invdiff.problems.base import FAMILIES, Problem, channel_norm
from invdiff.problems.defaults import configured_sampler, default_entry, sampler_settings
from invdiff.problems.fastmri import cg_sense, estimate_noise_std, fastmri_problem
from invdiff.problems.image_tasks import IMAGE_TASKS, image_task
from invdiff.problems.sources import ProblemSource, image_source, open_source
from invdiff.problems.spec import FAMILY, OPERATORS, PRIOR, ProblemSpec, resolve_operator

__all__ = ["FAMILIES", "FAMILY", "IMAGE_TASKS", "OPERATORS", "PRIOR", "Problem", "ProblemSource", "ProblemSpec",
           "cg_sense", "channel_norm", "configured_sampler", "default_entry", "estimate_noise_std", "fastmri_problem",
           "image_source", "image_task", "open_source", "resolve_operator", "sampler_settings"]
