"""Task types beyond text classification: data formats, label schemes and metrics per task."""
