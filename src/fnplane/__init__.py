"""fnplane: a self-hostable, NVCF-compatible serverless platform for GPU inference functions."""

__version__ = "0.1.0"
