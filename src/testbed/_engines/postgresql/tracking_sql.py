"""The SQL that sets up per-test restore tracking inside a clone.

``tracking_sql`` writes one ``DO`` block: the ``_testbed`` schema with a
pristine copy of each table, the triggers that log what each statement
touches, and the server-side ``reset()`` function a restore calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed._engines.postgresql.connection import string
from testbed._engines.postgresql.table_reset import BASELINE_SCHEMA

SCHEMA = "_testbed"

# Schemas whose tables and sequences are the user's data: not the system's,
# nor testbed's tracking or baseline.
USER_SCHEMA = (
    f"n.nspname NOT IN ('pg_catalog', 'information_schema', '{SCHEMA}', '{BASELINE_SCHEMA}') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'"
)

# Without event triggers (they need a superuser), DDL shows as a change in
# the catalog rows describing the user's objects. Columns a TRUNCATE, VACUUM
# or ANALYZE rewrites (relfilenode, relpages, …) are left out of pg_class.
_SIGNATURE = f"""
WITH ns AS (SELECT n.oid FROM pg_namespace n WHERE {USER_SCHEMA}),
rel AS (SELECT c.oid FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns))
SELECT md5(concat_ws('|',
  (SELECT string_agg(concat_ws(',', n.oid, n.nspname, n.nspowner, n.nspacl), ';' ORDER BY n.oid)
   FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM ns)),
  (SELECT string_agg(concat_ws(',', c.oid, c.relname, c.relnamespace, c.relkind, c.relowner,
          c.relacl, c.reloptions, c.relpersistence, c.relnatts, c.relchecks, c.relrowsecurity,
          c.relforcerowsecurity, c.relreplident, c.reltablespace, c.reloftype, c.relam),
          ';' ORDER BY c.oid)
   FROM pg_class c WHERE c.oid IN (SELECT oid FROM rel)),
  (SELECT string_agg(concat_ws(',', a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod,
          a.attnotnull, a.atthasdef, a.attisdropped, a.attidentity, a.attgenerated,
          a.attcollation, a.attacl, a.attoptions, a.attstattarget, a.attstorage),
          ';' ORDER BY a.attrelid, a.attnum)
   FROM pg_attribute a WHERE a.attrelid IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid)
   FROM pg_constraint x WHERE x.connamespace IN (SELECT oid FROM ns)),
  (SELECT string_agg(x.xmin || ':' || x.indexrelid, ';' ORDER BY x.indexrelid)
   FROM pg_index x WHERE x.indrelid IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid)
   FROM pg_trigger x WHERE x.tgrelid IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid)
   FROM pg_rewrite x WHERE x.ev_class IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid)
   FROM pg_attrdef x WHERE x.adrelid IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.seqrelid, ';' ORDER BY x.seqrelid)
   FROM pg_sequence x WHERE x.seqrelid IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid)
   FROM pg_proc x WHERE x.pronamespace IN (SELECT oid FROM ns)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid)
   FROM pg_type x WHERE x.typnamespace IN (SELECT oid FROM ns)),
  (SELECT string_agg(x.xmin || ':' || x.objoid || ':' || x.objsubid, ';'
          ORDER BY x.objoid, x.objsubid)
   FROM pg_description x WHERE x.objoid IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid) FROM pg_extension x),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid) FROM pg_policy x)
))
"""


@dataclass(frozen=True)
class Table:
    oid: int
    qname: str
    # Quoted names: every column, those an INSERT may set, the primary key.
    columns: tuple[str, ...]
    insertable: tuple[str, ...]
    key: tuple[str, ...]
    always_identity: bool
    children: tuple[int, ...]

    @property
    def pristine(self) -> str:
        return f"{SCHEMA}.p{self.oid}"

    @property
    def keys(self) -> str:
        return f"{SCHEMA}.k{self.oid}"

    def insert_from_pristine(self, where: str = "") -> str:
        cols = ", ".join(self.insertable)
        override = " OVERRIDING SYSTEM VALUE" if self.always_identity else ""
        return f"INSERT INTO {self.qname} ({cols}){override} SELECT {cols} FROM {self.pristine}{where}"


def tracking_sql(
    tables: list[Table],
    sequences: list[tuple[int, str]],
    mark: str,
    *,
    replica: bool,
    truncate_rows: int,
) -> str:
    """One DO block that sets up tracking in the current database.

    ``replica``: restores run in replica mode and an event trigger logs DDL,
    both of which need a superuser; otherwise restores defer constraints and
    compare a catalog signature.
    """
    s = SCHEMA
    out = [
        f"CREATE SCHEMA {s};",
        f"COMMENT ON SCHEMA {s} IS {string(mark)};",
        f"CREATE TABLE {s}.ddl (tag text NOT NULL);",
        # Tables to restore whole: truncated ones, and those without a key.
        f"CREATE TABLE {s}.dirty (relid oid NOT NULL);",
        f"CREATE TABLE {s}.tables (relid oid PRIMARY KEY, qname text NOT NULL,"
        " children oid[] NOT NULL, big boolean NOT NULL, restore text NOT NULL, clear text);",
        f"CREATE FUNCTION {s}.dirty() RETURNS trigger LANGUAGE plpgsql AS $fn$"
        f" BEGIN INSERT INTO {s}.dirty VALUES (TG_RELID); RETURN NULL; END $fn$;",
    ]
    restore_keyed = []
    for t in tables:
        cols = ", ".join(t.columns)
        out.append(f"CREATE TABLE {t.pristine} AS SELECT {cols} FROM {t.qname};")
        clear = None
        if t.key:
            key = ", ".join(t.key)
            out += [
                f"CREATE UNIQUE INDEX ON {t.pristine} ({key});",
                f"CREATE TABLE {t.keys} AS SELECT {key} FROM {t.qname} WITH NO DATA;",
                f"CREATE FUNCTION {s}.log{t.oid}() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN"
                f" IF TG_OP = 'INSERT' THEN INSERT INTO {t.keys} SELECT {key} FROM {s}_new;"
                f" ELSIF TG_OP = 'DELETE' THEN INSERT INTO {t.keys} SELECT {key} FROM {s}_old;"
                f" ELSE INSERT INTO {t.keys} SELECT {key} FROM {s}_old"
                f" UNION ALL SELECT {key} FROM {s}_new; END IF;"
                " RETURN NULL; END $fn$;",
            ]
            for event, transition in (
                ("INSERT", f"NEW TABLE AS {s}_new"),
                ("UPDATE", f"OLD TABLE AS {s}_old NEW TABLE AS {s}_new"),
                ("DELETE", f"OLD TABLE AS {s}_old"),
            ):
                out.append(
                    f"CREATE TRIGGER {s}_{event.lower()} AFTER {event} ON {t.qname}"
                    f" REFERENCING {transition} FOR EACH STATEMENT"
                    f" EXECUTE FUNCTION {s}.log{t.oid}();"
                )
            out.append(
                f"CREATE TRIGGER {s}_truncate AFTER TRUNCATE ON {t.qname}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {s}.dirty();"
            )
            clear = f"DELETE FROM {t.keys}"
            keyed = f" WHERE ({key}) IN (SELECT {key} FROM {t.keys})"
            restore_keyed.append(
                f" IF EXISTS (SELECT FROM {t.keys}) THEN"
                f" DELETE FROM {t.qname}{keyed};"
                f" {t.insert_from_pristine(keyed)};"
                f" DELETE FROM {t.keys}; END IF;"
            )
        else:
            out.append(
                f"CREATE TRIGGER {s}_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
                f" ON {t.qname} FOR EACH STATEMENT EXECUTE FUNCTION {s}.dirty();"
            )
        children = "{" + ",".join(str(c) for c in t.children) + "}"
        out.append(
            f"INSERT INTO {s}.tables VALUES ({t.oid}, {string(t.qname)}, '{children}',"
            f" (SELECT count(*) >= {truncate_rows} FROM {t.pristine}),"
            f" {string(t.insert_from_pristine())}, {string(clear) if clear else 'NULL'});"
        )
    restore_sequences = ""
    if sequences:
        current = " UNION ALL ".join(
            f"SELECT {oid}::oid::regclass, last_value, is_called FROM {qname}"
            for oid, qname in sequences
        )
        out.append(
            f"CREATE TABLE {s}.sequences AS SELECT * FROM ({current}) AS v(seq, last_value, is_called);"
        )
        restore_sequences = (
            f" PERFORM setval(p.seq, p.last_value, p.is_called)"
            f" FROM ({current}) AS c(seq, last_value, is_called)"
            f" JOIN {s}.sequences p ON p.seq = c.seq"
            " WHERE (c.last_value, c.is_called) IS DISTINCT FROM (p.last_value, p.is_called);"
        )
    if replica:
        checks = f"""  IF EXISTS (SELECT FROM {s}.ddl) THEN RETURN false; END IF;
  IF current_setting('session_replication_role') <> 'replica' THEN
    RAISE EXCEPTION 'testbed restores of this database need a superuser';
  END IF;"""
    else:
        # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: checked at
        # commit, when every row is back.
        checks = f"""  IF (SELECT signature FROM {s}.signed) <> {s}.signature() THEN RETURN false; END IF;
  SET CONSTRAINTS ALL DEFERRED;"""
    # Whole-table restores: TRUNCATE the big ones whose referencing tables
    # are all truncated too (TRUNCATE refuses otherwise), DELETE the others.
    out.append(
        f"""CREATE FUNCTION {s}.reset() RETURNS boolean LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
  tb_whole oid[];
  tb_truncated oid[];
  tb_blocked oid[];
  tb_table record;
BEGIN
{checks}
  tb_whole := ARRAY(SELECT DISTINCT relid FROM {s}.dirty);
  IF cardinality(tb_whole) > 0 THEN
    tb_truncated := ARRAY(SELECT relid FROM {s}.tables WHERE relid = ANY (tb_whole) AND big);
    LOOP
      tb_blocked := ARRAY(SELECT relid FROM {s}.tables
                       WHERE relid = ANY (tb_truncated) AND NOT children <@ tb_truncated);
      EXIT WHEN cardinality(tb_blocked) = 0;
      tb_truncated := ARRAY(SELECT unnest(tb_truncated) EXCEPT SELECT unnest(tb_blocked));
    END LOOP;
    IF cardinality(tb_truncated) > 0 THEN
      EXECUTE 'TRUNCATE ' || (SELECT string_agg(qname, ', ') FROM {s}.tables
                              WHERE relid = ANY (tb_truncated));
    END IF;
    FOR tb_table IN SELECT * FROM {s}.tables WHERE relid = ANY (tb_whole) LOOP
      IF NOT tb_table.relid = ANY (tb_truncated) THEN EXECUTE 'DELETE FROM ' || tb_table.qname; END IF;
      EXECUTE tb_table.restore;
      IF tb_table.clear IS NOT NULL THEN EXECUTE tb_table.clear; END IF;
    END LOOP;
    DELETE FROM {s}.dirty;
  END IF;
{chr(10).join(restore_keyed)}
{restore_sequences}
  RETURN true;
END $fn$;"""
    )
    if replica:
        # DDL makes the pristine copies wrong; temporary objects vanish with
        # their session and change nothing.
        out += [
            f"""CREATE FUNCTION {s}.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF tg_tag LIKE 'DROP %' AND tg_tag <> 'DROP OWNED' THEN RETURN; END IF;
  IF EXISTS (SELECT FROM pg_event_trigger_ddl_commands()
             WHERE schema_name IS NULL OR schema_name NOT LIKE 'pg\\_temp%')
     OR NOT EXISTS (SELECT FROM pg_event_trigger_ddl_commands()) THEN
    INSERT INTO {s}.ddl VALUES (tg_tag);
  END IF;
END $fn$;""",
            f"""CREATE FUNCTION {s}.log_drop() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF EXISTS (SELECT FROM pg_event_trigger_dropped_objects() WHERE NOT is_temporary) THEN
    INSERT INTO {s}.ddl VALUES (tg_tag);
  END IF;
END $fn$;""",
            f"CREATE EVENT TRIGGER {s}_ddl ON ddl_command_end EXECUTE FUNCTION {s}.log_ddl();",
            f"CREATE EVENT TRIGGER {s}_drop ON sql_drop EXECUTE FUNCTION {s}.log_drop();",
        ]
    else:
        # Last, so that it covers the triggers made above.
        out += [
            f"CREATE FUNCTION {s}.signature() RETURNS text LANGUAGE sql STABLE"
            f" AS $fn$ {_SIGNATURE} $fn$;",
            f"CREATE TABLE {s}.signed AS SELECT {s}.signature() AS signature;",
        ]
    body = "\n".join(out)
    return f"DO $testbed$\nBEGIN\n{body}\nEND\n$testbed$"
