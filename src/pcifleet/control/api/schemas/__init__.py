"""Request and response bodies of the API, one module per resource (pydantic v2, no I/O).

Request models forbid unknown fields and constrain every value, so malformed input is a 400
naming the field before any use case runs. The client (:mod:`pcifleet.client`) parses
responses with the same models.
"""
