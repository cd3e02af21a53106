"""Generated cases: Hypothesis strategies, coverage of value classes, shrinking of failures."""
