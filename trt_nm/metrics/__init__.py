"""Metrics: accuracy over timesteps (:mod:`.accuracy`) and energy from operation counts
(:mod:`.energy`)."""
