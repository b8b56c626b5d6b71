"""Rows of the hot paths: written at once with one prepared INSERT, kept as the database session's
objects; read without a transaction where none is needed.

The unit of work's flush of a new object (dependency sort, per-mapper bookkeeping, default
handling) costs several times the INSERT it sends; a sign-in writes three rows, so on that path a
row is inserted here instead. The object comes back persistent, every column loaded, as if the
flush had written it: later changes to it are flushed as usual.
"""
from __future__ import annotations

from functools import cache
from typing import TypeVar

from sqlalchemy import inspect, insert
from sqlalchemy.orm import make_transient_to_detached

from gatehouse.database import is_postgres
from gatehouse.extensions import db

Model = TypeVar("Model")


def columns_of(model: type, *, leaving: tuple[str, ...] = ()) -> list[tuple[str, object]]:
    """A model's (attribute name, column) pairs in mapping order, but those `leaving` out."""
    return [(attribute.key, attribute.columns[0]) for attribute in inspect(model).column_attrs
            if attribute.key not in leaving]


@cache
def _shape(model: type) -> tuple[frozenset[str], object]:
    """A model's column names and its INSERT, built once."""
    return frozenset(key for key, _ in columns_of(model)), insert(model)


def insert_row(model: type[Model], values: dict, **related) -> Model:
    """Insert the row of `values` (every column of `model`, by attribute name) in the transaction in
    progress, and return its persistent object with the `related` objects set on it.

    Objects still pending in the database session are flushed first, so a row that refers to one
    (a registration's new account) finds it.
    """
    columns, statement = _shape(model)
    if values.keys() != columns:
        raise ValueError(f"{model.__name__}: give every column, not {sorted(values.keys() ^ columns)}")
    if db.session.new:
        db.session.flush()
    db.session.connection().execute(statement, values)
    instance = model(**values, **related)
    make_transient_to_detached(instance)
    db.session.add(instance)
    return instance


def read(statement, params: dict) -> list:
    """The rows of one statement that needs no transaction of its own.

    On PostgreSQL, outside the database session's transaction, it is read on a pooled connection
    in autocommit: one round trip, where the session's connection would send BEGIN before it and
    ROLLBACK when it goes back to the pool, so a request that only reads (GET /auth/me) sends
    nothing else. Inside a transaction it is read there, and sees that transaction's own writes.
    SQLite starts no transaction for a read and has no round trips to save (and switching a
    pysqlite connection's isolation costs a PRAGMA each way), so there it is always the session's.
    """
    if not is_postgres() or db.session().in_transaction():
        return db.session.connection().execute(statement, params).all()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return conn.execute(statement, params).all()
