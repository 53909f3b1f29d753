from setuptools import find_packages, setup

setup(
    name="anomalens_dagster",
    version="0.1.0",
    description="AnomaLens: anomaly detection for online stores, as a Dagster code location on DuckDB.",
    packages=find_packages(include=["anomalens_dagster", "anomalens_dagster.*"]),
    package_data={"anomalens_dagster": ["py.typed", "dagster.yaml", "scaleout/dagster.yaml"]},
    python_requires=">=3.11",
    install_requires=[
        # 1.13: `pool=` on assets, dg.Config/ConfigurableResource idioms, FreshnessPolicy.time_window.
        "dagster>=1.13,<1.14",
        "dagster-webserver>=1.13,<1.14",
        "dagster-duckdb>=0.29",
        # The 1.4 LTS line: the registry ships DuckDB's DuckLake/PostgreSQL extension packages only for
        # 1.4.4, and 1.4 cannot open a file written by DuckDB 2.x (delete and rebuild such a file).
        "duckdb==1.4.4",
        "faker>=30",
        # 2.2+: copy-on-write semantics the core relies on (never mutating inputs).
        "pandas>=2.2",
        "numpy>=1.26",
        "pyarrow>=15",
        "scikit-learn>=1.5",
        # Keras 3 models round-trip through `.keras` bytes; the CPU build is enough here.
        "tensorflow-cpu>=2.16",
        "keras>=3.0",
        "joblib>=1.3",
        "pyyaml>=6.0",
        # pandas.DataFrame.to_markdown, used for table previews in asset metadata.
        "tabulate>=0.9",
        # Charts of the HTML anomaly report; plotly.js is inlined so the file opens offline.
        "plotly>=5.20",
        # Slack alerts: dagster-slack's SlackResource (slack_sdk's WebClient, whose API base URL tests point to a fake).
        "dagster-slack>=0.29,<0.30",
        # Scaling out (settings `storage`/`execution`, README "Scaling out"): DuckDB's DuckLake and PostgreSQL
        # extensions as registry packages built for the duckdb pin (DuckDB cannot download them here), the
        # instance on PostgreSQL and the Celery executor with Redis.
        "duckdb-ext-ducklake==1.4.4.20260205",
        "duckdb-ext-postgres==1.4.4.20260205",
        "dagster-postgres>=0.29,<0.30",
        "dagster-celery>=0.29,<0.30",
        "redis>=5",
    ],
    extras_require={
        "dev": [
            "pytest>=8.0",
            "pytest-timeout>=2.3",
            # `make test` runs the modules that time nothing on two workers.
            "pytest-xdist>=3.6",
            "playwright>=1.45",
            # A real SMTP server on loopback for the e-mail alert tests.
            "aiosmtpd>=1.4",
        ],
    },
    entry_points={"console_scripts": ["anomalens=anomalens_dagster.cli:main"]},
)
