"""Storage adapters: tables, engine, migrations and the repositories the app uses."""
