"""Admin paginators for tables too large to count on every page (the events list, the audit log)."""

from django.core.paginator import Paginator
from django.db import connection, models
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
    """Pages of a table of tens of millions of rows without counting them all on every page load.

    Unfiltered, PostgreSQL's own row estimate (pg_class.reltuples) stands in for COUNT(*), which
    would scan the whole table; filtered lists are counted exactly.
    """

    @cached_property
    def count(self):
        qs = self.object_list
        if connection.vendor == "postgresql" and isinstance(qs, models.QuerySet) and not qs.query.where:
            with connection.cursor() as cur:
                cur.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [qs.model._meta.db_table])
                row = cur.fetchone()
            if row and row[0] > 100_000:
                return int(row[0])
        return super().count
