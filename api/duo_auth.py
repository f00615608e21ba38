"""Who calls a GitLab Duo endpoint: the GitLab instance, vouched for by its JWT, and the user behind it.

GitLab Duo Self-Hosted sends no user's credential: it sends a token its instance signed
(``Authorization: Bearer <JWT>``) and headers naming the instance, its realm and (18.x) the user.
The checks are those of GitLab's own AI gateway, with its answers, so GitLab and its admins see
what they expect (its ``authenticate`` in ai_gateway/cloud_connector/auth.py at e123a2926dae, since
moved to the gitlab-cloud-connector package; ../shared/duo-protocol.md 4.3):

1. ``Authorization`` present (401 "No authorization header presented") with the Bearer scheme
   ("Invalid authorization header"); ``X-Gitlab-Authentication-Type: oidc`` ("Invalid
   authentication token type - only OIDC is supported").
2. The token: RS256, signed by a key GITLAB_URL publishes (``api.duo_keys``), ``aud`` holding
   ``gitlab-ai-gateway`` (a string on 17.x, a list on 18.x), ``exp``/``nbf`` within ``LEEWAY``;
   else "Forbidden by auth provider". No issuer check, as GitLab's gateway has none.
3. The headers agree with the claims: ``X-Gitlab-Realm`` with ``gitlab_realm``,
   ``X-Gitlab-Instance-Id`` with ``gitlab_instance_id`` (if the token has one) and with ``sub``
   ("Header mismatch 'X-Gitlab-Realm'"); ``sub`` among ``duo.instance_ids`` when they are set.
4. One of the feature's unit primitives among the token's ``scopes``; else 403 ``{"detail":
   "Unauthorized to access code completions"}``. 17.x instances name both code features
   ``code_suggestions``, which GitLab's gateway accepts for either since the split
   (75fc9bc287e3): so does this one.

Only then is GitLab asked anything: the user is ``X-Gitlab-User-Id`` (sent from 18.0; 17.x sends
none, and such a request has no user), named by the gateway's own token and cached
(``Authenticator.username``); a user GitLab does not know is no user. A request with no user
matches no ``gitlab_user_id`` route, and a per-user rate limit counts it as GitLab's pseudonymous
user of its instance (``_rate_key``). ``project_path`` is the
request's project only if that user has ``gitlab.min_access_level`` in it
(``Authenticator.project_access``); otherwise the request has no project, and is not refused for
it. The header is trusted because only GitLab holds the instance token: GitLab's own AI gateway
trusts it the same way. Header names match in any case (Falcon's ``get_header``): 17.x sends
``X-Gitlab-Instance-Id``, 18.x ``x-gitlab-instance-id``.

Neither the token nor anything in the body (the model API key GitLab sends) is logged; a refusal's
reason goes to the access record as ``auth_detail``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from api.duo_keys import BadToken, InstanceKeys
from api.errors import DuoForbidden, DuoUnauthorized
from api.gitlab import GitLabClient
from api.identity import Authenticator, Identity
from api.project_ref import project_ref
from shared.config_types import DuoConfig
from shared.errors import InvalidRequest

# GitLab's AI gateway's CLOUD_CONNECTOR_SERVICE_NAME default, which GitLab puts in aud (ai_gateway/config.py).
AUDIENCE = "gitlab-ai-gateway"
# Rails sets nbf 5 s before iat and exp an hour after (Gitlab::CloudConnector::JsonWebToken): the
# leeway only absorbs clock skew between GitLab's host and this one.
LEEWAY = 30.0
# 17.x's one scope for both code features.
CODE_SUGGESTIONS = "code_suggestions"
LEGACY_SCOPES = {"complete_code": CODE_SUGGESTIONS, "generate_code": CODE_SUGGESTIONS}
# How GitLab's gateway names what a missing unit primitive refuses (api/v2/code/completions.py,
# api/v2/chat/agent.py, code_suggestions/handler.py); any other primitive by its own name
# (api/v1/chat/auth.py: f"Unauthorized to access {unit_primitive}").
REFUSED_FEATURES = {"complete_code": "code completions", "generate_code": "code generations",
                    "duo_chat": "duo chat", "duo_classic_chat": "duo chat", CODE_SUGGESTIONS: "code suggestions"}
_USER_ID = re.compile(r"[1-9][0-9]{0,18}")
_GLOBAL_USER_ID = re.compile(r"[A-Za-z0-9+/=_-]{1,128}")  # base64 of a SHA-256 (44 characters)

MISSING = "No authorization header presented"
BAD_SCHEME = "Invalid authorization header"
NOT_OIDC = "Invalid authentication token type - only OIDC is supported"
FORBIDDEN = "Forbidden by auth provider"


@dataclass(frozen=True)
class DuoCaller:
    identity: Identity  # no user on 17.x; a project only where that user has the access it takes
    instance_id: str  # the token's sub: GitLab's ApplicationSetting#uuid
    realm: str  # self-managed (or saas)
    scopes: tuple[str, ...]


class DuoAuthenticator:
    def __init__(self, keys: InstanceKeys, authenticator: Authenticator, config: DuoConfig):
        self.keys = keys
        self.authenticator = authenticator
        self.instance_ids = frozenset(config.instance_ids)

    @classmethod
    def for_gitlab(cls, gitlab: GitLabClient, authenticator: Authenticator, config: DuoConfig) -> DuoAuthenticator:
        """The one an app builds: keys from the same GitLab as every other lookup."""
        return cls(InstanceKeys(gitlab.oidc_keys, refetch_interval=config.keys_refetch_interval),
                   authenticator, config)

    def identify(self, req, *, unit_primitives, project_path: str | None = None,
                 refusal: str | None = None) -> DuoCaller:
        """The caller of a Duo endpoint that needs one of ``unit_primitives``; ``DuoUnauthorized``
        (401) or ``DuoForbidden`` (403, with ``refusal`` as its detail if given) otherwise;
        ``GitLabUnavailable`` (503) if GitLab cannot say. ``req.context.identity`` is set as soon
        as the user is known, so the access record of a later refusal names them."""
        if isinstance(unit_primitives, str):
            unit_primitives = (unit_primitives,)
        claims = self._claims(req)
        scopes = _scopes(claims)
        wanted = set(unit_primitives) | {LEGACY_SCOPES[up] for up in unit_primitives if up in LEGACY_SCOPES}
        if not wanted & set(scopes):
            _note(req, f"scopes lack {' or '.join(sorted(wanted))}")
            first = next(iter(unit_primitives), CODE_SUGGESTIONS)
            raise DuoForbidden(refusal or f"Unauthorized to access {REFUSED_FEATURES.get(first, first)}")
        global_user_id = _global_user_id(req.get_header("X-Gitlab-Global-User-Id"))
        if global_user_id is not None:  # pseudonymous: the access record tells 17.x's users apart by it
            _log(req, "gitlab_global_user_id", global_user_id)
        identity = self._user(req.get_header("X-Gitlab-User-Id"), claims["sub"], global_user_id)
        req.context.identity = identity
        if identity.user_id is not None and isinstance(project_path, str) and project_path:
            identity = self._with_project(identity, project_path)
            req.context.identity = identity
        return DuoCaller(identity, claims["sub"], claims["gitlab_realm"], scopes)

    # -- the instance --------------------------------------------------------------------------
    def _claims(self, req) -> dict:
        authorization = req.get_header("Authorization")
        if authorization is None:
            raise _refused(req, MISSING)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise _refused(req, BAD_SCHEME)
        if req.get_header("X-Gitlab-Authentication-Type") != "oidc":
            raise _refused(req, NOT_OIDC)
        try:
            claims = self.keys.decode(token.strip(), audience=AUDIENCE, leeway=LEEWAY)
        except BadToken as bad:
            raise _refused(req, FORBIDDEN, bad.reason) from None
        sub, realm = claims.get("sub"), claims.get("gitlab_realm")
        if not isinstance(sub, str) or not sub or not isinstance(realm, str) or not realm:
            raise _refused(req, FORBIDDEN, "no sub or gitlab_realm claim")
        if realm != req.get_header("X-Gitlab-Realm"):
            raise _refused(req, "Header mismatch 'X-Gitlab-Realm'")
        instance = req.get_header("X-Gitlab-Instance-Id")
        if claims.get("gitlab_instance_id") and claims["gitlab_instance_id"] != instance:
            raise _refused(req, "Header mismatch 'X-Gitlab-Instance-Id'")
        if sub != instance:
            raise _refused(req, "Header mismatch 'X-Gitlab-Instance-Id'")
        if self.instance_ids and sub not in self.instance_ids:
            raise _refused(req, "This GitLab instance is not one the gateway serves (duo.instance_ids).",
                           "sub not in duo.instance_ids")
        _log(req, "gitlab_instance_id", sub)
        return claims

    # -- the user and the project --------------------------------------------------------------
    def _user(self, header: str | None, instance_id: str, global_user_id: str | None) -> Identity:
        unknown = Identity(credential="duo", rate_key=_rate_key(instance_id, global_user_id), instance_id=instance_id)
        if not header or not _USER_ID.fullmatch(header.strip()):
            return unknown
        user_id = header.strip()
        username = self.authenticator.username(user_id)
        if username is None:  # GitLab knows no such user: no route may match it
            return unknown
        return Identity(user_id, username, credential="duo")

    def _with_project(self, identity: Identity, project_path: str) -> Identity:
        try:
            ref = project_ref(project_path)
        except InvalidRequest:
            return identity  # not a project GitLab could have: the IDE's guess, not a refusal
        if ref is None:
            return identity
        return self.authenticator.project_access(identity, ref) or identity


def _rate_key(instance_id: str, global_user_id: str | None) -> str:
    """Whose allowance a per-user rate limit takes for a request with no known user: GitLab's
    pseudonymous id of the user (``X-Gitlab-Global-User-Id``, a SHA-256 of the instance id, the user
    id and a salt, sent by 17.x and 18.x alike: lib/gitlab/global_anonymous_id.rb), within its
    instance; without it, the instance's. So one 17.x user's burst takes that user's allowance, not
    that of every user without an id, and one instance's none of another's. A user id is digits
    only: neither form can be one."""
    return f"instance-{instance_id}-user-{global_user_id}" if global_user_id else f"instance-{instance_id}"


def _global_user_id(header: str | None) -> str | None:
    found = (header or "").strip()
    return found if _GLOBAL_USER_ID.fullmatch(found) else None


def _scopes(claims: dict) -> tuple[str, ...]:
    scopes = claims.get("scopes")
    if not isinstance(scopes, list):
        return ()
    return tuple(scope for scope in scopes if isinstance(scope, str))


def _note(req, detail: str) -> None:
    _log(req, "auth_detail", detail)


def _log(req, field: str, value: str) -> None:
    log_fields = getattr(req.context, "log", None)
    if isinstance(log_fields, dict):
        log_fields[field] = value


def _refused(req, message: str, detail: str | None = None) -> DuoUnauthorized:
    _note(req, detail or message)
    return DuoUnauthorized(message)
