"""Experiments (issue #17): A/B tests of recommender configurations and campaign variants.

Today only the pure statistical core lives here (`experiments.stats`, docs/experiments.md); the
Django app (models, assignment service, console, API) is planned.
"""
