"""The cluster fixtures live in tests/conftest.py, so that other folders' tests (the store and bus
contracts) can run on the clusters too."""
