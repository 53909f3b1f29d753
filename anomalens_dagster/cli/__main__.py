"""`python -m anomalens_dagster.cli`, the same as the `anomalens` command."""

from anomalens_dagster.cli import main

main()
