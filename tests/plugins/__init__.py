"""Backend plugins used by the tests: deliberately broken, crashing and hanging ones."""
