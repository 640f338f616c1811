"""OpenAPI: the schemes of the API's own authentication classes (accounts/access.py, accounts/signin.py).

drf-spectacular registers an extension when its class is defined: the app's ready() imports this module.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.access.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <prefix>.<secret>`: a key created in the admin, with scopes.",
        }


class CustomerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.access.CustomerTokenAuthentication"
    name = "CustomerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Customer <token>`: from POST /api/customer-tokens/, for one customer's own data.",
        }


class ThrottledBasicScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.signin.ThrottledBasicAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "basic",
            "description": "An operator's username and password (locked for a while after repeated failures).",
        }
