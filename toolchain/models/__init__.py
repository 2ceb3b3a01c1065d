"""The model layer: loading, model sources, pruning, training and evaluation of torch models.
Imports only :mod:`toolchain.core` and :mod:`cfg_codegen`.
"""
