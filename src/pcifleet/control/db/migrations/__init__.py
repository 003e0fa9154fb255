"""Alembic migrations of the controller database (run by :func:`..engine.migrate`)."""
