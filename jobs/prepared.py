"""INSERT statements built before a transaction and run inside it.

Django builds an INSERT in Python (each value through its field's preparation, the SQL
text assembled) and then sends it. Inside a write transaction on SQLite that building
happens while the database's single write lock is held, so every other writer waits for
it. An order's write path builds its statements first (`prepare_insert`,
`jobs.services.prepare_publish`) and opens the transaction only to run them: the lock is
held for the statements and the COMMIT alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections, models, router
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery


class PreparedInsert:
    """One model's rows, as the statements Django would send for them (`run` sends
    them). With `returning_pk`, the statement returns the ids of the rows written; with
    `read_pk` (an auto-incremented key, left out of the INSERT), they are set on the
    objects, as `bulk_create` does."""

    def __init__(
        self,
        model: type[models.Model],
        objs: Sequence[models.Model],
        *,
        on_conflict: OnConflict | None = None,
        returning_pk: bool = False,
        read_pk: bool = False,
    ) -> None:
        self.model = model
        self.objs = list(objs)
        self.alias = router.db_for_write(model)
        self.read_pk = read_pk
        connection = connections[self.alias]
        query = InsertQuery(model, on_conflict=on_conflict)
        fields = [f for f in model._meta.concrete_fields if not f.generated]
        if read_pk:
            fields = [f for f in fields if f is not model._meta.pk]
        query.insert_values(fields, self.objs)
        compiler = query.get_compiler(connection=connection)
        self.returning = (returning_pk or read_pk) and connection.features.can_return_rows_from_bulk_insert
        if self.returning:
            compiler.returning_fields = [model._meta.pk]
        # One statement for all rows where the backend inserts in bulk (SQLite, PostgreSQL).
        self.statements: list[tuple[str, tuple[Any, ...]]] = [(sql, tuple(params)) for sql, params in compiler.as_sql()]

    def run(self) -> list[tuple[Any, ...]]:
        """Send the statements (in the caller's transaction) and return the rows they
        returned; the objects are marked saved, as `save()` leaves them."""
        rows: list[tuple[Any, ...]] = []
        with connections[self.alias].cursor() as cursor:
            for sql, params in self.statements:
                cursor.execute(sql, params)
                if self.returning:
                    rows.extend(cursor.fetchall())
        if self.read_pk and len(rows) == len(self.objs):
            attname = self.model._meta.pk.attname
            for obj, row in zip(self.objs, rows, strict=True):
                setattr(obj, attname, row[0])
        for obj in self.objs:
            obj._state.adding, obj._state.db = False, self.alias
        return rows


def prepare_insert(model: type[models.Model], objs: Sequence[models.Model]) -> PreparedInsert:
    """Plain INSERTs of new rows. An auto-incremented primary key still unset is left to
    the database and read back into the objects when the statements run."""
    pk = model._meta.pk
    read_pk = isinstance(pk, models.AutoField) and all(obj.pk is None for obj in objs)
    return PreparedInsert(model, objs, read_pk=read_pk)
