"""Use cases of the controller: each module is one area, over the database models."""
