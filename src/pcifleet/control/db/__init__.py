"""The controller's persistence: models, engine and migrations, repositories."""
