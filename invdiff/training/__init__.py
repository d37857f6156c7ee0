"""Training priors: the only code that joins priors and datasets.

* :mod:`~invdiff.training.data`: training images from offline anatomy, phantoms, fastMRI, NIfTI and
  DICOM files, and the batches drawn from them;
* :mod:`~invdiff.training.unet`: a UNet diffusion prior (DDPM objective, EMA weights);
* :mod:`~invdiff.training.tokens`: an image token prior (VQ tokenizer, then a masked transformer);
* :mod:`~invdiff.training.driver`: the driver both share (checkpoints, bit-exact resume, time limit).
"""

from invdiff.training.data import TrainingImages, load_training_images
from invdiff.training.unet import TrainingConfig, train_prior

__all__ = ["TrainingConfig", "TrainingImages", "load_training_images", "train_prior"]
