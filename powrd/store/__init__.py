"""The SQLite store (APSW): schema, migrations, the single writer, readers.

No SQL string lives outside this package.
"""
