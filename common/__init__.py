"""Plumbing with no domain: bulk COPY helpers, write lanes, the API error format, schema hooks, middleware.

Imports no app of the project (profiles, segments, recommendations, campaigns); they import it.
"""
