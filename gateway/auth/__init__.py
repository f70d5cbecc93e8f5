"""Who is calling: the API key behind ``Authorization: Bearer …``, and the models it may use."""

from gateway.auth.authenticator import Authenticator

__all__ = ["Authenticator"]
