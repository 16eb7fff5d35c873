"""Dataset readers and text helpers: raw files in, canonical `datasets.DatasetDict` out."""
