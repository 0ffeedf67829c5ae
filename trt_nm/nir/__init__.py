"""NIR, the one junction between backends, exporters and the simulator.

:mod:`.nodes` is THE table of node kinds every reader uses (role, state, coefficients, op
counting, quantization); :mod:`.graph` holds the graph utilities (order, cycles, dt, metadata,
declared shapes); :mod:`.modules` the torch modules that run nodes; :mod:`.validate` reads and
checks files and graphs; :mod:`.export` writes zoo models, :mod:`.importer` builds torch
networks from graphs, :mod:`.io` gathers the user-facing functions, :mod:`.onnx_export` writes
a graph to ONNX (one timestep with explicit state, or the time loop as one ``Scan``). Every
failure is a one-line :class:`trt_nm.errors.NirError`.
"""
