"""Serving: an HTTP API and a web page for one case, over :func:`her2dlr.predict.predict`.

Safe by default: loopback only unless a token is set, uploads bounded in bytes and pixels and
checked by content, DICOM de-identified in memory, uploads held only in a temporary folder
removed after each request, a bounded number of concurrent predictions, no CORS.
"""

from her2dlr.serve.app import NOTICE, create_app
from her2dlr.serve.settings import TOKEN_ENV, ServeSettings, is_loopback

__all__ = ["NOTICE", "TOKEN_ENV", "ServeSettings", "create_app", "is_loopback"]
