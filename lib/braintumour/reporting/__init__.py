"""Reporting: the one schema and writer for metrics files and figures, the metrics records, titles,
figures, tables and sentences for a reader, the results read back from reports/metrics, the notebooks'
execution and their HTML and PDF export, and docs/experiments.md's table."""
