"""The database: tables, migrations, and the named operations that carry the guarantees."""
