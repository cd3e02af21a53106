"""bce-harness: cross-framework conformance for binary cross-entropy with logits.

Data flows one way: cases → backends → comparison → report. Each stage is its own
module so it can be read, tested and replaced alone.
"""

__version__ = "0.1.0"
