"""verdict: from a backend's numbers to a status.

Ulp distances, expectations and their predicates.
"""
