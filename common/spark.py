"""
Reaching Apache Spark for the pipeline's Spark backend (settings.PIPELINE_BACKEND = "spark"; docs/spark.md).

`spark_session()` returns the process's SparkSession, built once from settings: a Spark Connect
client when `SPARK_REMOTE` is set (the worker then needs no JVM), else a classic session on
`SPARK_MASTER` (`local[2]` runs Spark inside the worker, for tests and for trying it on one machine).
`jdbc_read` and `jdbc_write` move tables between PostgreSQL and Spark over JDBC: reads in parallel
partitions by a numeric column's range, writes in batches to a table the caller names (a staging
table that the app then switches in one transaction).

PySpark is imported inside the functions, so importing this module (and the apps that name it)
loads neither PySpark nor a JVM.
"""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import sys
import threading
from contextlib import contextmanager
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

_lock = threading.Lock()


class SparkUnavailable(ImproperlyConfigured):
    """Spark cannot be reached from here (no PySpark, no Java, no JDBC driver): the message says which."""


def java_missing_reason() -> str | None:
    """Why a local JVM cannot start here, in words; None when it can."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "PySpark is not installed (pip install -r requirements.txt)"
    if settings.SPARK_REMOTE:
        return None
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and os.path.exists(os.path.join(java_home, "bin", "java"))) and not shutil.which("java"):
        return "no Java runtime (apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
    if not os.path.exists(settings.SPARK_JDBC_JAR):
        return (
            f"PostgreSQL's JDBC driver is not at {settings.SPARK_JDBC_JAR}"
            " (apt-get install libpostgresql-jdbc-java, or set SPARK_JDBC_JAR)"
        )
    return None


def backend_problem() -> str | None:
    """Why the Spark backend cannot run here, in words (the database is not PostgreSQL, or no JVM, PySpark
    or JDBC driver); None when it can. Checked before a run starts and by `manage.py check`."""
    if connection.vendor != "postgresql":
        return (
            "PIPELINE_BACKEND=spark needs PostgreSQL: Spark reads the events and writes the results over JDBC,"
            f" and the database in use (DATABASE_URL) is {connection.vendor}."
            " Use PostgreSQL, or PIPELINE_BACKEND=local."
        )
    reason = java_missing_reason()
    return f"PIPELINE_BACKEND=spark, but Spark cannot start here: {reason}." if reason else None


def spark_conf() -> dict[str, str]:
    """The Spark properties the settings give (docs/spark.md lists them)."""
    conf = {
        "spark.app.name": "marketing-pipeline",
        "spark.sql.shuffle.partitions": str(settings.SPARK_SHUFFLE_PARTITIONS),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",  # no progress bars in the worker's log
        "spark.driver.memory": settings.SPARK_DRIVER_MEMORY,
        "spark.executor.memory": settings.SPARK_EXECUTOR_MEMORY,
        "spark.executor.cores": str(settings.SPARK_EXECUTOR_CORES),
        "spark.executor.instances": str(settings.SPARK_EXECUTOR_INSTANCES),
        "spark.jars": settings.SPARK_JDBC_JAR,
        # Arrow moves frames between the JVM and Python (toPandas, createDataFrame) in columns.
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    conf.update({str(k): str(v) for k, v in settings.SPARK_CONF.items()})
    return conf


_session = None
_session_key: tuple | None = None


_release_registered = False


def _release_remote_objects() -> None:
    """At exit, while the Connect client's threads still run: collect the garbage now, so that the
    finaliser of each remote ML model (it deletes the server's copy with a gRPC call) runs while it
    can be answered. Left to the interpreter's own finalisation, that call can wait forever on a
    channel whose threads are gone: a `recompute` that had finished its steps hung at exit."""
    gc.collect()


def _build(remote: str, master: str, conf: dict[str, str]):
    from pyspark.sql import SparkSession

    if not remote and master.startswith("local"):
        # Python workers (pandas UDFs) run beside this process: the same interpreter, so the venv's
        # pandas and the app's code (PySpark reads PYSPARK_PYTHON when the session starts).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    builder = builder.remote(remote) if remote else builder.master(master)
    for key, value in conf.items():
        if remote and key in ("spark.driver.memory", "spark.jars", "spark.ui.enabled"):
            continue  # the Connect server's own
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    if not remote:
        session.sparkContext.setLogLevel("ERROR")
    global _release_registered
    if remote and not _release_registered:
        atexit.register(_release_remote_objects)  # runs before the interpreter tears threads down
        _release_registered = True
    return session


def spark_session():
    """The process's SparkSession, built once per settings (a worker keeps it between runs).
    SparkUnavailable, with the reason, when Spark cannot start here."""
    global _session, _session_key
    reason = java_missing_reason()
    if reason:
        raise SparkUnavailable(f"The Spark backend cannot start: {reason}.")
    conf = spark_conf()
    key = (settings.SPARK_REMOTE, settings.SPARK_MASTER, tuple(sorted(conf.items())))
    with _lock:
        if _session is None or _session_key != key:
            if _session is not None:
                _session.stop()
            _session, _session_key = _build(settings.SPARK_REMOTE, settings.SPARK_MASTER, conf), key
        return _session


def spark_stop() -> None:
    """Stop the process's session, if any."""
    global _session, _session_key
    with _lock:
        if _session is not None:
            _session.stop()
        _session, _session_key = None, None


def jdbc_url() -> tuple[str, dict[str, str]]:
    """The JDBC URL and connection properties of the default database. SparkUnavailable on SQLite:
    the Spark backend reads and writes PostgreSQL."""
    db = connection.settings_dict  # the test database's name under pytest-django
    if connection.vendor != "postgresql":
        raise SparkUnavailable(
            f"The Spark backend needs PostgreSQL (DATABASE_URL); the database in use is {connection.vendor}."
        )
    host = db.get("HOST") or "localhost"
    port = db.get("PORT") or "5432"
    url = f"jdbc:postgresql://{host}:{port}/{quote(db['NAME'])}"
    props = {"driver": "org.postgresql.Driver", "user": db.get("USER") or "postgres"}
    if db.get("PASSWORD"):
        props["password"] = db["PASSWORD"]
    return url, props


def jdbc_read(
    spark,
    query: str,
    *,
    partition_column: str | None = None,
    lower: int = 0,
    upper: int = 0,
    partitions: int | None = None,
):
    """A DataFrame of `query` (a table name, or "(SELECT ...) AS q"), read in `partitions` parallel
    ranges of `partition_column` between `lower` and `upper` (rows outside them are still read, by
    the first and last partition)."""
    url, props = jdbc_url()
    reader = spark.read.format("jdbc").option("url", url).option("dbtable", query).option("fetchsize", "10000")
    for key, value in props.items():
        reader = reader.option(key, value)
    if partition_column and upper > lower:
        reader = (
            reader.option("partitionColumn", partition_column)
            .option("lowerBound", str(lower))
            .option("upperBound", str(upper + 1))
            .option("numPartitions", str(partitions or settings.SPARK_JDBC_PARTITIONS))
        )
    return reader.load()


def jdbc_write(df, table: str, *, mode: str = "append", batch_size: int = 10_000) -> None:
    """Write `df` into `table` over JDBC, in batches, one transaction per partition (so the caller
    writes into a staging table and switches it in itself). The driver rewrites each batch into
    multi-row INSERTs (``reWriteBatchedInserts``: several times fewer round trips than one statement
    per row)."""
    url, props = jdbc_url()
    props = {**props, "reWriteBatchedInserts": "true"}
    writer = df.write.format("jdbc").mode(mode).option("url", url).option("dbtable", table)
    writer = writer.option("batchsize", str(batch_size)).option("isolationLevel", "READ_COMMITTED")
    for key, value in props.items():
        writer = writer.option(key, value)
    writer.save()


@contextmanager
def adaptive_execution_off(spark):
    """Adaptive query execution off inside the block (restored after). Spark 4.1's adaptive
    re-planning can build a pandas UDF's plan node (MapInPandasExec) on a thread without an active
    session, which fails the query with an internal error (a NullPointerException in
    PythonSQLMetrics): seen on 1M customers, not on 100k. The recommendations step materialises its
    pandas-UDF scoring inside this block."""
    key = "spark.sql.adaptive.enabled"
    before = spark.conf.get(key, "true")
    spark.conf.set(key, "false")
    try:
        yield
    finally:
        spark.conf.set(key, before)


def _context(spark):
    """The classic session's SparkContext; None on Spark Connect (which has none)."""
    try:
        return spark.sparkContext
    except Exception:  # PySparkNotImplementedError on Connect
        return None


@contextmanager
def spark_jobs_tagged(spark, tag: str):
    """Tag the Spark jobs this thread starts inside the block, so that `spark_jobs_cancel(spark, tag)`,
    from any thread, stops them (a SparkContext job tag on a classic session: a session tag is
    thread-local there; a session tag on Spark Connect)."""
    context = _context(spark)
    if context is not None:
        context.addJobTag(tag)
    else:
        spark.addTag(tag)
    try:
        yield
    finally:
        if context is not None:
            context.removeJobTag(tag)
        else:
            spark.removeTag(tag)


def spark_jobs_cancel(spark, tag: str) -> None:
    """Stop the running Spark jobs tagged `tag` (`spark_jobs_tagged`): they fail with SPARK_JOB_CANCELLED."""
    context = _context(spark)
    if context is not None:
        context.cancelJobsWithTag(tag)
    else:
        spark.interruptTag(tag)
