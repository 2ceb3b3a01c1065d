"""Fake ``pytorch_nndct`` (tests only); see ../README.md."""
