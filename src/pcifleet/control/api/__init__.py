"""The controller's REST API: :func:`pcifleet.control.api.app.create_app` builds it.

Kept free of imports so that :mod:`pcifleet.control.api.schemas` (used by the client) does not
pull in the web framework.
"""
