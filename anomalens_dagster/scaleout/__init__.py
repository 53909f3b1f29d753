"""Past one machine: DuckLake storage (catalog in PostgreSQL, Parquet data), a distributed executor
(dagster-celery with Redis) and day partitions written in parallel, all chosen in the settings file.

The default deployment (one DuckDB file, runs in one process) needs none of this; see README
"Scaling out".
"""
