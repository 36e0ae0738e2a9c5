"""The warehouses: :mod:`.duckdb` (the default) and :mod:`.deltalake` (optional: the
``deltalake`` extra). A new warehouse is a module here, like :mod:`.deltalake`."""
