"""Dataset readers, splits and data validation: raw files in, canonical `datasets.DatasetDict` out.

Task-agnostic: what differs per task type arrives as arguments (`spec.DatasetSpec`,
`validation.checks.TaskChecks`) from `tlflow.task_types`, which this package never imports.
"""
