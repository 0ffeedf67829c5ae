"""Analyses of trained models, after the TRT paper (arXiv 2506.19256).

* :mod:`trt_nm.analysis.fisher`: trace of the empirical Fisher information per timestep, the
  information centroid, and :class:`~trt_nm.analysis.fisher.FisherRecorder` (a trainer
  callback, enabled by ``TrainConfig.fisher_epochs`` / ``trt-nm train --fisher-epochs``).
* :mod:`trt_nm.analysis.sharpness`: top Hessian eigenvalue by power iteration on
  Hessian-vector products, and filter-normalised 1-D/2-D loss slices (Li et al. 2018).

The CLI is ``trt-nm analyze fisher|sharpness`` (:mod:`trt_nm.cli.analyze`); the
TRT/TET/SDT comparison is ``bench/compare_losses.py``.
"""
