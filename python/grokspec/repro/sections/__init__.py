"""One renderer per section of report.md; each takes the report and returns its lines."""
