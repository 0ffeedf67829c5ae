"""Simulation reports: report.json/report.md (:mod:`.build`) and their plots (:mod:`.plots`)."""
