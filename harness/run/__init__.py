"""Running backends: discovery (registry), the worker pool and runner, crash-safe phases."""
