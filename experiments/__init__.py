"""Experiments (issue #17): A/B tests of recommender configurations, decided by customers' behaviour.

`stats.py` is the pure statistical core (docs/experiments.md); the app around it defines experiments
and their variants (models), assigns customers and computes each variant's suggestions (services,
the pipeline's "experiments" step), routes the API's suggestions to a customer's variant
(`routing.py`), attributes clicks and purchases to impressions and analyses them (selectors), and
shows and decides in the console (admin) and the API. Campaign message variants use the same
statistics from the campaigns app.
"""
