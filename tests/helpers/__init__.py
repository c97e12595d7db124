"""Helpers every test suite shares (imported as `tests.helpers.*`; fixtures live in tests/conftest.py)."""
