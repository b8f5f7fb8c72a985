"""The code behind the config files: their shared sections, their checks, their loading.

`config_base` holds the sections every `configs/<name>.py` starts from,
`config_checks` turns a bad shared value into one line naming the key and the
fix, and `config_files` loads `configs/<name>.py[:variant]` (or a run's saved
config.json) outside the CLI and holds the one flat form of a config and the one
comparison of two (`flatten`, `drift`). Named `settings` rather than `config` so that it
is not confused with the repository's `configs/` folder of config files, nor
shadowed by (or shadowing) the `config` argument that nearly every function takes.
"""
