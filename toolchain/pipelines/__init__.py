"""The pipeline layer: deploy, bench, prune runs, sweep, autotune, reports, optimize, demo.
Imports the layers below (core, models, cfg_codegen, targets); the API and the CLI sit above.
"""
