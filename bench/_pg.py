"""Shared by the PostgreSQL benchmarks: make sure their own database exists."""

from __future__ import annotations


def ensure_database(url: str) -> None:
    """Create the database named at the end of ``url`` if it does not exist (trust auth)."""
    import psycopg

    base, _, name = url.rpartition("/")
    name = name.split("?")[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
