"""Contracts shared by training, serving and offline tools.

Layout, settings, the model bundle and registry, the action/moment vocabulary
and the heuristic score.
"""
