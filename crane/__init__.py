"""CRANE-repro: multimodal recommendation from raw Amazon data to paper tables.

CRANE itself (arXiv 2601.11151) is a *reconstruction*: the paper's method section was not
available; see docs/crane-method.md for the method and docs/crane-model.md for what comes from where.
"""

__version__ = "0.1.0"
