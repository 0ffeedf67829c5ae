"""Analyses of trained models (Fisher information per timestep, sharpness)."""
