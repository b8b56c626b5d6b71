"""The SQL statements an app sends while a block runs, recorded from the engine itself."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import event

from gatehouse.extensions import db


COMMIT = "COMMIT"


@dataclass
class Recorded:
    statements: list[tuple[str, object]] = field(default_factory=list)  # (SQL, driver parameters)
    events: list[str] = field(default_factory=list)  # every statement's SQL and every COMMIT, in order

    @property
    def sql(self) -> list[str]:
        return [" ".join(statement.split()) for statement, _ in self.statements]

    def verbs(self) -> list[str]:
        """In order, each statement's kind and table (e.g. 'UPDATE refresh_tokens') and each 'COMMIT'."""
        return [event if event == COMMIT else _verb(" ".join(event.split())) for event in self.events]


def _verb(sql: str) -> str:
    words = sql.split()
    kind = words[0].upper()
    if kind == "SELECT":
        # The first table read (a scalar subquery's FROM (SELECT … is not one).
        tables = [after for word, after in zip(words, words[1:]) if word == "FROM" and not after.startswith("(")]
        table = tables[0] if tables else ""
    elif kind == "INSERT":
        table = words[2]
    elif kind == "UPDATE":
        table = words[1]
    elif kind == "DELETE":
        table = words[2]
    else:
        table = ""
    return f"{kind} {table}".strip()


@contextmanager
def recording(app):
    """Record what the app's engine executes inside the block (any thread, any connection)."""
    with app.app_context():
        engine = db.engine
    seen = Recorded()

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        seen.statements.append((statement, parameters))
        seen.events.append(statement)

    def on_commit(conn):
        seen.events.append(COMMIT)

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)
