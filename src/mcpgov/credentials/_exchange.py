"""The issuer as an RFC 8693 token-exchange endpoint (a Starlette app), and its client.

``POST /token`` (``application/x-www-form-urlencoded``):

* ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``;
* ``subject_token``: the caller's workload identity token (``subject_token_type`` a JWT,
  ID-token or access-token URI) to mint, or a credential (``subject_token_type`` =
  :data:`CREDENTIAL_TOKEN_TYPE`) to delegate or exchange it;
* ``actor_token`` / ``actor_token_type``: the identity of the sub-agent (delegation) or of the
  server exchanging an inbound credential for a downstream audience;
* ``audience`` or ``resource`` (exactly one), ``scope`` (space-separated), and the extension
  parameters ``tool`` (repeatable), ``task_id``, ``purpose``, ``args_hash``, ``ttl``, ``single_use``,
  ``may_act`` (repeatable principal ids ``issuer#subject``: who may act for the new credential's
  subject, within the issuer's issuance policy).

Exchanging a credential (delegation, downstream exchange) always needs the caller's identity as
``actor_token``: the new credential is for that actor, who must be the credential's own subject
(narrowing) or named in its ``may_act`` claim; a credential alone proves nothing about who holds it.

The answer is ``{"access_token", "issued_token_type", "token_type": "N_A", "expires_in", "scope"}``
or an RFC 6749 error object (``invalid_request``, ``invalid_grant``, ``invalid_target``,
``unsupported_grant_type``) that never echoes a token. ``POST /revoke`` (bearer: the caller's
identity) revokes ``token`` (a credential of the caller) or ``task_id`` (in the caller's tenant);
``GET /jwks`` publishes the verification keys.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcpgov._errors import ConfigurationError, CredentialError
from mcpgov._principal import Principal
from mcpgov._types import is_async_callable, present
from mcpgov.credentials._claims import CREDENTIAL_TOKEN_TYPE, Credential, CredentialClaims
from mcpgov.credentials._client import CredentialRequest
from mcpgov.credentials._issuer import CredentialIssuer
from mcpgov.credentials._jose import parse_credential

__all__ = ["GRANT_TYPE", "IDENTITY_TOKEN_TYPES", "ExchangeTokenSource", "SubjectTokenVerifier", "token_exchange_app"]

logger = logging.getLogger("mcpgov.credentials")

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
"""The RFC 8693 grant type."""

IDENTITY_TOKEN_TYPES = frozenset(
    {
        "urn:ietf:params:oauth:token-type:jwt",
        "urn:ietf:params:oauth:token-type:id_token",
        "urn:ietf:params:oauth:token-type:access_token",
    }
)
"""Subject token types taken as a workload identity token."""

SubjectTokenVerifier = Callable[[str], Awaitable[Principal]]
"""Verifies a workload identity token and returns the principal; raises when it is not valid."""

_MAX_BODY = 16_384
_JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a type URI, not a secret
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class _OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def _error(exc: _OAuthError) -> JSONResponse:
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description}, status_code=exc.status, headers=_NO_STORE
    )


async def _form(request: Request) -> dict[str, list[str]]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise _OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            raise _OAuthError("invalid_request", "the request body is too large", 413)
    try:
        return parse_qs(body.decode("ascii"), keep_blank_values=False, strict_parsing=False, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise _OAuthError("invalid_request", "the body is not a valid form") from None


def _one(form: dict[str, list[str]], name: str, *, required: bool = False) -> str | None:
    values = form.get(name)
    if not values:
        if required:
            raise _OAuthError("invalid_request", f"missing parameter {name}")
        return None
    if len(values) != 1:
        raise _OAuthError("invalid_request", f"parameter {name} must appear once")
    return values[0]


async def _principal(verify: SubjectTokenVerifier, token: str) -> Principal:
    try:
        principal = await verify(token)
    except Exception as exc:  # noqa: BLE001 - any verifier failure refuses the grant (fail closed)
        logger.info("token exchange: identity refused (%s)", type(exc).__name__)
        raise _OAuthError("invalid_grant", "the identity token was not accepted") from None
    if not isinstance(principal, Principal):
        raise _OAuthError("invalid_grant", "the identity token was not accepted")
    return principal


def _credential_error(exc: CredentialError) -> _OAuthError:
    if exc.reason in {"audience_not_allowed", "wrong_audience"}:
        return _OAuthError("invalid_target", "the requested audience is not allowed")
    if exc.reason in {"may_not_act", "not_granted"}:
        return _OAuthError("invalid_grant", f"the request cannot be granted to this caller ({exc.reason})")
    if exc.reason in {"widening", "depth_exceeded", "bad_request", "single_use", "no_tenant", "wrong_tenant"}:
        return _OAuthError("invalid_request", f"the request cannot be granted ({exc.reason})")
    return _OAuthError("invalid_grant", f"the subject token was not accepted ({exc.reason})")


def token_exchange_app(
    issuer: CredentialIssuer, verify_identity: SubjectTokenVerifier, *, path_prefix: str = ""
) -> Starlette:
    """Serve ``issuer`` as an RFC 8693 token-exchange endpoint.

    Args:
        issuer: the credential issuer.
        verify_identity: verifies a workload identity token (async, returns a
            :class:`~mcpgov.Principal` with a tenant, raises when invalid).
        path_prefix: prefix of the routes (``/token``, ``/revoke``, ``/jwks``).

    Returns:
        A Starlette application.
    """
    if not isinstance(issuer, CredentialIssuer):
        raise ConfigurationError("token_exchange_app needs a CredentialIssuer")
    if not is_async_callable(verify_identity):
        raise ConfigurationError("verify_identity must be an async callable (token) -> Principal")

    async def token(request: Request) -> Response:
        try:
            form = await _form(request)
            credential = await _exchange(issuer, verify_identity, form)
        except _OAuthError as exc:
            return _error(exc)
        except CredentialError as exc:
            return _error(_credential_error(exc))
        claims = credential.claims
        body: dict[str, Any] = {
            "access_token": credential.token,
            "issued_token_type": CREDENTIAL_TOKEN_TYPE,
            "token_type": "N_A",
            "expires_in": max(0, math.floor(claims.expires_at - claims.issued_at)),
        }
        if claims.scopes:
            body["scope"] = " ".join(claims.scopes)
        return JSONResponse(body, headers=_NO_STORE)

    async def revoke(request: Request) -> Response:
        try:
            principal = await _principal(verify_identity, _bearer(request))
            form = await _form(request)
            await _revoke(issuer, principal, form)
        except _OAuthError as exc:
            return _error(exc)
        except CredentialError as exc:
            return _error(_OAuthError("temporarily_unavailable", f"revocation failed ({exc.reason})", 503))
        return Response(status_code=200, headers=_NO_STORE)

    async def jwks(request: Request) -> Response:
        return JSONResponse(issuer.jwks(), headers={"Cache-Control": "max-age=60"})

    prefix = path_prefix.rstrip("/")
    return Starlette(
        routes=[
            Route(f"{prefix}/token", token, methods=["POST"]),
            Route(f"{prefix}/revoke", revoke, methods=["POST"]),
            Route(f"{prefix}/jwks", jwks, methods=["GET"]),
        ]
    )


def _bearer(request: Request) -> str:
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not bearer.strip():
        raise _OAuthError("invalid_client", "revocation needs the caller's identity as a bearer token", 401)
    return bearer.strip()


def _tools(form: dict[str, list[str]]) -> list[str] | None:
    values = form.get("tool")
    if not values:
        return None
    return [name for value in values for name in value.split()]


def _ttl(form: dict[str, list[str]]) -> float | None:
    raw = _one(form, "ttl")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _OAuthError("invalid_request", "ttl must be a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise _OAuthError("invalid_request", "ttl must be a positive number of seconds")
    return value


def _flag(form: dict[str, list[str]], name: str) -> bool | None:
    raw = _one(form, name)
    if raw is None:
        return None
    if raw not in {"true", "false"}:
        raise _OAuthError("invalid_request", f"{name} must be true or false")
    return raw == "true"


def _may_act(form: dict[str, list[str]]) -> list[tuple[str, str]]:
    parties: list[tuple[str, str]] = []
    for value in form.get("may_act", []):
        issuer, sep, subject = value.rpartition("#")
        if not sep or not issuer or not subject:
            raise _OAuthError("invalid_request", "may_act names principals as issuer#subject")
        parties.append((issuer, subject))
    return parties


async def _exchange(issuer: CredentialIssuer, verify: SubjectTokenVerifier, form: dict[str, list[str]]) -> Credential:
    if _one(form, "grant_type", required=True) != GRANT_TYPE:
        raise _OAuthError("unsupported_grant_type", "only token exchange is supported")
    subject_token = _one(form, "subject_token", required=True) or ""
    subject_type = _one(form, "subject_token_type", required=True)
    requested_type = _one(form, "requested_token_type")
    if requested_type is not None and requested_type != CREDENTIAL_TOKEN_TYPE:
        raise _OAuthError("invalid_request", "only mcpgov credentials are issued here")
    audience = _one(form, "audience")
    resource = _one(form, "resource")
    if audience is not None and resource is not None and audience != resource:
        raise _OAuthError("invalid_target", "name one target: audience or resource")
    audience = audience or resource
    scope = _one(form, "scope")
    scopes = scope.split() if scope is not None else None
    tools = _tools(form)
    ttl = _ttl(form)
    args_hash = _one(form, "args_hash")
    single_use = _flag(form, "single_use")
    may_act = _may_act(form)
    actor_token = _one(form, "actor_token")
    actor: Principal | None = None
    if actor_token is not None:
        if _one(form, "actor_token_type") not in IDENTITY_TOKEN_TYPES:
            raise _OAuthError("invalid_request", "actor_token_type must be an identity token type")
        actor = await _principal(verify, actor_token)
    if subject_type in IDENTITY_TOKEN_TYPES:
        if actor is not None:
            raise _OAuthError("invalid_request", "an identity subject takes no actor token")
        principal = await _principal(verify, subject_token)
        if audience is None or not tools:
            raise _OAuthError("invalid_request", "a credential needs an audience and at least one tool")
        return await issuer.mint(
            principal,
            audience=audience,
            tools=tools,
            scope=scopes or (),
            task_id=_one(form, "task_id"),
            purpose=_one(form, "purpose"),
            args_hash=args_hash,
            ttl=ttl,
            single_use=bool(single_use),
            may_act=may_act,
        )
    if subject_type == CREDENTIAL_TOKEN_TYPE:
        if _one(form, "task_id") is not None or _one(form, "purpose") is not None:
            raise _OAuthError("invalid_request", "task and purpose come from the subject credential")
        parent = issuer._own.check_token(subject_token)  # refuses early, before any actor lookup matters
        if actor is None:
            # Holder binding: a credential alone proves nothing about who presents it.
            raise _OAuthError("invalid_request", "exchanging a credential needs the caller's identity as actor_token")
        if audience is None or audience == parent.audience:
            return await issuer.delegate(
                subject_token,
                subject=actor,
                tools=tools,
                scope=scopes,
                ttl=ttl,
                args_hash=args_hash,
                single_use=single_use,
                may_act=may_act,
            )
        if not tools:
            raise _OAuthError("invalid_request", "a downstream credential names its tools")
        return await issuer.exchange(subject_token, audience=audience, tools=tools, actor=actor, scope=scopes, ttl=ttl)
    raise _OAuthError("invalid_request", "unsupported subject_token_type")


async def _revoke(issuer: CredentialIssuer, principal: Principal, form: dict[str, list[str]]) -> None:
    token = _one(form, "token")
    task_id = _one(form, "task_id")
    if (token is None) == (task_id is None):
        raise _OAuthError("invalid_request", "name either token or task_id")
    if not principal.tenant:
        raise _OAuthError("invalid_request", "the caller has no tenant")
    if task_id is not None:
        await issuer.revoke_task(principal, task_id)  # the caller's own task only
        return
    try:
        claims = issuer._own.check_token(token)
    except CredentialError:
        return  # RFC 7009: an invalid or expired token needs no revocation
    if claims.tenant != principal.tenant or (claims.subject, claims.subject_issuer) != (
        principal.subject,
        principal.issuer,
    ):
        raise _OAuthError("access_denied", "only the holder may revoke a credential", 403)
    await issuer.revoke(Credential(token or "", claims))


IdentityTokenProvider = str | Callable[[], str | Awaitable[str]]
"""A workload identity token, or a callable (sync or async) returning a current one."""


class ExchangeTokenSource:
    """A :class:`~mcpgov.credentials.TokenSource` that exchanges this workload's identity token
    for credentials at an RFC 8693 endpoint (see :func:`token_exchange_app`).

    Args:
        token_url: the ``/token`` endpoint.
        identity_token: this workload's identity token, or a callable returning a fresh one.
        revoke_url: the ``/revoke`` endpoint (default: next to ``token_url``).
        http_client: an ``httpx2.AsyncClient`` to use (default: one per request).
        timeout: seconds per HTTP request.
    """

    def __init__(
        self,
        token_url: str,
        identity_token: IdentityTokenProvider,
        *,
        revoke_url: str | None = None,
        http_client: httpx2.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not isinstance(token_url, str) or not token_url.startswith(("https://", "http://")):
            raise ConfigurationError("token_url must be an http(s) URL")
        if not (isinstance(identity_token, str) and identity_token) and not callable(identity_token):
            raise ConfigurationError("identity_token must be a token or a callable returning one")
        self.token_url = token_url
        self.revoke_url = revoke_url or token_url.rsplit("/", 1)[0] + "/revoke"
        self._identity = identity_token
        self._http = http_client
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ExchangeTokenSource({self.token_url!r})"

    async def identity_token(self) -> str:
        """The current identity token of this workload."""
        provider = self._identity
        value: Any = provider() if callable(provider) else provider
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str) or not value:
            raise CredentialError("no identity token to exchange", reason="no_identity")
        return value

    async def _post(self, url: str, data: dict[str, Any], headers: dict[str, str] | None = None) -> httpx2.Response:
        try:
            if self._http is not None:
                return await self._http.post(url, data=data, headers=headers, timeout=self.timeout)
            async with httpx2.AsyncClient(timeout=self.timeout) as client:
                response: httpx2.Response = await client.post(url, data=data, headers=headers)
                return response
        except httpx2.HTTPError as exc:
            raise CredentialError(
                f"the token endpoint is unreachable ({type(exc).__name__})", reason="exchange_failed"
            ) from None

    async def _credential(self, data: dict[str, Any]) -> Credential:
        response = await self._post(self.token_url, data)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            code = error if isinstance(error, str) and len(error) < 64 else "-"
            raise CredentialError(
                f"the token endpoint refused ({response.status_code} {code})", reason="exchange_refused"
            )
        token = body.get("access_token")
        if body.get("issued_token_type") != CREDENTIAL_TOKEN_TYPE or not isinstance(token, str):
            raise CredentialError("the token endpoint returned no credential", reason="exchange_failed")
        _, payload = parse_credential(token)
        return Credential(token, CredentialClaims.from_payload(payload))

    async def obtain(self, request: CredentialRequest, principal: Principal | None) -> Credential:
        data: dict[str, Any] = {
            "grant_type": GRANT_TYPE,
            "subject_token": await self.identity_token(),
            "subject_token_type": _JWT_TOKEN_TYPE,
            "requested_token_type": CREDENTIAL_TOKEN_TYPE,
            "audience": request.audience,
            "tool": list(request.tools),
        }
        data |= present(
            scope=" ".join(request.scope) if request.scope else None,
            task_id=request.task_id,
            purpose=request.purpose,
            args_hash=request.args_hash,
            ttl=repr(request.ttl) if request.ttl is not None else None,
            single_use="true" if request.single_use else None,
        )
        return await self._credential(data)

    async def exchange(
        self,
        subject_token: str,
        *,
        audience: str | None = None,
        tools: list[str] | None = None,
        scope: list[str] | None = None,
        ttl: float | None = None,
        as_actor: bool = True,
    ) -> Credential:
        """Exchange a credential: delegation (same audience) or downstream (another audience).

        Args:
            subject_token: the credential to exchange.
            audience: the target audience (None: the same, i.e. delegation).
            tools: the tools of the new credential.
            scope: its scopes.
            ttl: its requested lifetime.
            as_actor: send this workload's identity as the actor (it becomes the subject).
        """
        data: dict[str, Any] = {
            "grant_type": GRANT_TYPE,
            "subject_token": subject_token,
            "subject_token_type": CREDENTIAL_TOKEN_TYPE,
            "requested_token_type": CREDENTIAL_TOKEN_TYPE,
        }
        if as_actor:
            data["actor_token"] = await self.identity_token()
            data["actor_token_type"] = _JWT_TOKEN_TYPE
        if audience is not None:
            data["audience"] = audience
        if tools:
            data["tool"] = list(tools)
        if scope is not None:
            data["scope"] = " ".join(scope)
        if ttl is not None:
            data["ttl"] = repr(ttl)
        return await self._credential(data)

    async def _revoke(self, data: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {await self.identity_token()}"}
        response = await self._post(self.revoke_url, data, headers)
        if response.status_code != 200:
            raise CredentialError(f"revocation was refused ({response.status_code})", reason="revocation_failed")

    async def revoke(self, credential: Credential, principal: Principal | None) -> None:
        await self._revoke({"token": credential.token})

    async def revoke_task(self, task_id: str, principal: Principal | None) -> None:
        await self._revoke({"task_id": task_id})
