"""The command-line programs. Each module has `main(argv)` (raises on a mistake, returns the
result) and `cli(argv)` (the exit status), installed as `ppq2l-*` commands (pyproject.toml) and
called by the thin scripts in tools/ and deploy/python/."""
