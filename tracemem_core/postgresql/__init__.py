"""TraceMem's PostgreSQL database backend: Django's, with a connection check that costs no round trip
(``base.DatabaseWrapper.is_usable``; settings.DATABASES sets ``ENGINE`` to this package)."""
