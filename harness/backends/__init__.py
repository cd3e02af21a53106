"""The shipped framework backends: one module per framework, each imported lazily."""
