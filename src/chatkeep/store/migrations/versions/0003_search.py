"""full-text search: message text and chat titles

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-08 03:40:00

Every object is named ``search_*`` and kept in step by triggers, so that no write path (PUT, batch,
sync, turns) can forget to index. A reply is indexed when it leaves ``streaming``: its checkpoints
(one UPDATE every 250 ms while it streams) fire a trigger whose WHEN clause is false, costing
nothing. Rows that already exist are indexed here. See docs/search.md.
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The text of a message's content (a JSON string, or parts of which the text ones count).
_SQLITE_TEXT = """CASE json_type({c})
  WHEN 'text' THEN json_extract({c}, '$')
  WHEN 'array' THEN (SELECT group_concat(json_extract(value, '$.text'), char(10))
                     FROM json_each({c}) WHERE json_extract(value, '$.type') = 'text')
END"""

_SQLITE = [
    # External content: the index holds no copy of the text; the view says where it lives.
    f"""CREATE VIEW search_message_text AS
        SELECT pk, {_SQLITE_TEXT.format(c="content")} AS body
        FROM messages WHERE status <> 'streaming'""",
    """CREATE VIRTUAL TABLE search_messages USING fts5(
        body, content='search_message_text', content_rowid='pk',
        tokenize='unicode61 remove_diacritics 2')""",
    """CREATE VIRTUAL TABLE search_titles USING fts5(
        title, content='sessions', content_rowid='pk',
        tokenize='unicode61 remove_diacritics 2')""",
    f"""CREATE TRIGGER search_messages_insert AFTER INSERT ON messages
        WHEN new.status <> 'streaming' BEGIN
          INSERT INTO search_messages(rowid, body)
          VALUES (new.pk, {_SQLITE_TEXT.format(c="new.content")});
        END""",
    # A checkpoint (streaming -> streaming) is skipped by WHEN; a final status re-indexes.
    f"""CREATE TRIGGER search_messages_update AFTER UPDATE OF content, status ON messages
        WHEN old.status <> 'streaming' OR new.status <> 'streaming' BEGIN
          INSERT INTO search_messages(search_messages, rowid, body)
          SELECT 'delete', old.pk, {_SQLITE_TEXT.format(c="old.content")}
          WHERE old.status <> 'streaming';
          INSERT INTO search_messages(rowid, body)
          SELECT new.pk, {_SQLITE_TEXT.format(c="new.content")} WHERE new.status <> 'streaming';
        END""",
    f"""CREATE TRIGGER search_messages_delete AFTER DELETE ON messages
        WHEN old.status <> 'streaming' BEGIN
          INSERT INTO search_messages(search_messages, rowid, body)
          VALUES ('delete', old.pk, {_SQLITE_TEXT.format(c="old.content")});
        END""",
    """CREATE TRIGGER search_titles_insert AFTER INSERT ON sessions BEGIN
          INSERT INTO search_titles(rowid, title) VALUES (new.pk, new.title);
        END""",
    """CREATE TRIGGER search_titles_update AFTER UPDATE OF title ON sessions BEGIN
          INSERT INTO search_titles(search_titles, rowid, title)
          VALUES ('delete', old.pk, old.title);
          INSERT INTO search_titles(rowid, title) VALUES (new.pk, new.title);
        END""",
    """CREATE TRIGGER search_titles_delete AFTER DELETE ON sessions BEGIN
          INSERT INTO search_titles(search_titles, rowid, title)
          VALUES ('delete', old.pk, old.title);
        END""",
    "INSERT INTO search_messages(rowid, body) SELECT pk, body FROM search_message_text",
    "INSERT INTO search_titles(search_titles) VALUES ('rebuild')",
]

_PG_TABLES = [
    """CREATE FUNCTION search_language() RETURNS regconfig
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'simple'::regconfig $$""",
    """CREATE FUNCTION search_text(content json) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE json_typeof(content)
          WHEN 'string' THEN content #>> '{}'
          WHEN 'array' THEN (SELECT string_agg(p ->> 'text', E'\\n')
                             FROM json_array_elements(content) AS p WHERE p ->> 'type' = 'text')
        END $$""",
    # The vectors live in their rows, set by BEFORE triggers: no second table, key or
    # foreign key to maintain on every write (measured: a side table cost 3x more per insert).
    "ALTER TABLE messages ADD COLUMN search_tsv tsvector",
    "ALTER TABLE sessions ADD COLUMN search_tsv tsvector",
    """CREATE FUNCTION search_index_message() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          NEW.search_tsv := to_tsvector(search_language(), search_fold(search_text(NEW.content)));
          RETURN NEW;
        END $$""",
    """CREATE TRIGGER search_messages_insert BEFORE INSERT ON messages FOR EACH ROW
        WHEN (NEW.status <> 'streaming') EXECUTE FUNCTION search_index_message()""",
    # A checkpoint (streaming -> streaming) is skipped by WHEN; a final status indexes.
    """CREATE TRIGGER search_messages_update BEFORE UPDATE OF content, status ON messages
        FOR EACH ROW WHEN (NEW.status <> 'streaming'
          AND (OLD.status = 'streaming' OR NEW.content::text IS DISTINCT FROM OLD.content::text))
        EXECUTE FUNCTION search_index_message()""",
    """CREATE FUNCTION search_index_title() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          NEW.search_tsv := to_tsvector(search_language(), search_fold(NEW.title));
          RETURN NEW;
        END $$""",
    """CREATE TRIGGER search_titles_insert BEFORE INSERT ON sessions FOR EACH ROW
        EXECUTE FUNCTION search_index_title()""",
    """CREATE TRIGGER search_titles_update BEFORE UPDATE OF title ON sessions FOR EACH ROW
        WHEN (NEW.title IS DISTINCT FROM OLD.title) EXECUTE FUNCTION search_index_title()""",
    """UPDATE messages SET search_tsv = to_tsvector(search_language(),
        search_fold(search_text(content))) WHERE status <> 'streaming'""",
    "UPDATE sessions SET search_tsv = to_tsvector(search_language(), search_fold(title))",
    "CREATE INDEX search_messages_tsv ON messages USING gin (search_tsv)",
    "CREATE INDEX search_sessions_tsv ON sessions USING gin (search_tsv)",
]


def _pg_fold_function() -> str:
    """``search_fold``: case folded in every script (an ICU collation: a C-locale database
    lowers only A-Z), accents removed, and anything but letters and digits made a space, so that
    PostgreSQL's parser splits words where FTS5's unicode61 does (no host or e-mail tokens).

    Accents go with ``unaccent`` when the extension can be created; otherwise (no privilege, no
    contrib package) with Unicode decomposition."""
    conn = op.get_bind()
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS unaccent")
    except Exception:  # any refusal (no privilege, no contrib package): fall back below
        pass
    schema = conn.scalar(
        text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'unaccent'"
        )
    )
    return fold_function_sql(schema)


def fold_function_sql(unaccent_schema: str | None, name: str = "search_fold") -> str:
    """The function, with ``unaccent`` from that schema, or by decomposition (NFD, combining
    marks dropped: accented letters, though not ``ø`` or ``ł``) when there is none."""
    lowered = 'lower(t COLLATE "und-x-icu")'
    if unaccent_schema is not None:
        quoted = '"' + unaccent_schema.replace('"', '""') + '"'
        folded = f"{quoted}.unaccent('{quoted}.unaccent'::regdictionary, {lowered})"
    else:
        folded = f"regexp_replace(normalize({lowered}, NFD), '[\\u0300-\\u036f]+', '', 'g')"
    return f"""CREATE FUNCTION {name}(t text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT regexp_replace({folded} COLLATE "und-x-icu", '[^[:alnum:]]+', ' ', 'g') $$"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        statements = _SQLITE
    else:
        statements = [_pg_fold_function(), *_PG_TABLES]
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("messages_insert", "messages_update", "messages_delete"):
            op.execute(f"DROP TRIGGER search_{trigger}")
        for trigger in ("titles_insert", "titles_update", "titles_delete"):
            op.execute(f"DROP TRIGGER search_{trigger}")
        op.execute("DROP TABLE search_messages")
        op.execute("DROP TABLE search_titles")
        op.execute("DROP VIEW search_message_text")
        return
    for trigger in ("messages_insert", "messages_update"):
        op.execute(f"DROP TRIGGER search_{trigger} ON messages")
    for trigger in ("titles_insert", "titles_update"):
        op.execute(f"DROP TRIGGER search_{trigger} ON sessions")
    op.execute("ALTER TABLE messages DROP COLUMN search_tsv")
    op.execute("ALTER TABLE sessions DROP COLUMN search_tsv")
    for function in ("search_index_message()", "search_index_title()", "search_text(json)"):
        op.execute(f"DROP FUNCTION {function}")
    op.execute("DROP FUNCTION search_fold(text)")
    op.execute("DROP FUNCTION search_language()")
