"""The DuckDB resource: files written by a newer DuckDB fail with what to do."""

from __future__ import annotations

import struct

import duckdb
import pytest

from anomalens_dagster.resources import AnomaLensDuckDB

# DuckDB's main file header: an 8-byte checksum of the rest of its 4 KiB block, "DUCK", then the
# storage version as a little-endian uint64 (64 for DuckDB 1.0-1.4; a file written by 2.0.1 says 999).
HEADER_BYTES = 4096
VERSION_OFFSET = 12
NEWER_STORAGE_VERSION = 999


def duckdb_header_checksum(block: bytes) -> int:
    """DuckDB's block checksum: 5381 xor-ed with each 64-bit word times a mixing constant."""
    checksum = 5381
    for (word,) in struct.iter_unpack("<Q", block):
        checksum ^= (word * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return checksum


def claim_storage_version(path, version: int) -> None:
    """Rewrite the file's header as if a DuckDB with this storage version had written it."""
    with open(path, "r+b") as file:
        header = bytearray(file.read(HEADER_BYTES))
        assert header[8:12] == b"DUCK"
        header[VERSION_OFFSET : VERSION_OFFSET + 8] = struct.pack("<Q", version)
        header[:8] = struct.pack("<Q", duckdb_header_checksum(bytes(header[8:])))
        file.seek(0)
        file.write(header)


@pytest.fixture
def file_from_a_newer_duckdb(db_path) -> str:
    duckdb.connect(str(db_path)).close()
    claim_storage_version(db_path, NEWER_STORAGE_VERSION)
    return str(db_path)


def test_the_header_rewrite_keeps_a_file_of_this_duckdb_readable(db_path):
    duckdb.connect(str(db_path)).close()
    with open(db_path, "rb") as file:
        (version,) = struct.unpack("<Q", file.read(HEADER_BYTES)[VERSION_OFFSET : VERSION_OFFSET + 8])

    claim_storage_version(db_path, version)

    with AnomaLensDuckDB(database=str(db_path)).read_connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("mode", ["get_connection", "read_connection"])
def test_a_file_written_by_a_newer_duckdb_fails_naming_the_file_and_how_to_rebuild_it(file_from_a_newer_duckdb, mode):
    resource = AnomaLensDuckDB(database=file_from_a_newer_duckdb)

    with pytest.raises(duckdb.IOException) as raised:
        with getattr(resource, mode)():
            pass

    message = str(raised.value)
    expected = f"DuckDB file '{file_from_a_newer_duckdb}' was written by a newer DuckDB than the {duckdb.__version__}"
    assert expected in message
    assert "make clean && make demo" in message


def test_a_reader_of_an_in_memory_database_gets_a_plain_connection():
    with AnomaLensDuckDB(database=":memory:").read_connection() as conn:
        assert conn.execute("SELECT 42").fetchone() == (42,)
