"""One router per resource, assembled in ``app.main.create_app``."""
