"""Exhaustive sweeps: every logit of a format, every backend, judged like `report`.

The data flow, one module each: `plan` (what a sweep computes) → `patterns` (bit
patterns, shards, binades) → `exact` (the reference over a shard) → `shard` (one backend
over a shard, in its own process: `isolate`, `child`; judged by `judging`) → `engine`
(Dask: tasks, shard files, resume, retry, progress) → `summary` (the JSON document) →
`html` (the error maps, with `sweep.html.j2`). `cli` is the command. See docs/sweep.md.
"""
