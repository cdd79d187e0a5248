"""Alembic migrations for the metadata schema (SQLite and PostgreSQL)."""
