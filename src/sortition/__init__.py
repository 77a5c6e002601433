"""Sortition: adaptive experiments and contextual bandits.

Importing the package is cheap: the offline modules (posterior, policy, ...) and the
request-time module (``sortition.serving``) are imported on demand.
"""

__version__ = "0.1.0"
