"""The paper's experiments with grokspec's own training, scan and
calibration: the plan (which runs), the analysis, and the report."""
