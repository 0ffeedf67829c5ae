"""Scripts run by the vendor toolchains' own interpreters (never imported by trt_nm).

Each ``<chip>_runner.py`` is executed as ``python RUNNER DEPLOY_DIR RESULT_NPZ`` inside the
cached vendor venv (:mod:`trt_nm.chip.vendor`). It may import only numpy, the standard library
and the vendor's packages; it loads the deployed files and ``expected.npz["x"]`` the way a
chip team would, runs the vendor simulator, and writes ``RESULT_NPZ`` with ``out`` and one
``layer:NAME`` array per hidden layer the vendor tool exposes (the keys of
:meth:`trt_nm.chip.base.Chip.simulate`), plus ``versions`` (json text of package versions).
Errors: one line on stderr, exit code 2.
"""
