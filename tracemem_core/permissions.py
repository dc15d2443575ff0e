"""Who may change TraceMem's configuration: the one place that decides (issue 11).

Every admin operation names an explicit Django permission (declared in its model's ``Meta``);
superusers hold them all. ``is_staff`` decides nothing here: it only lets a person into Django's
own admin site, where each page asks these same permissions. An inactive account holds none.
The system actor (management commands, Celery, ``apply_config``) may do everything.

The matrix — what each permission allows and through which door — is in docs/security.md.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from tracemem_core.actor import Actor
from tracemem_core.errors import PermissionDenied

# codename → what it allows, worded to complete "you need the permission X to ..."
PERMISSIONS: dict[str, str] = {
    "agents.manage_agents": "create, edit and disable agents",
    "agents.manage_agent_keys": "issue, rotate and revoke the keys of any agent",
    "agents.manage_own_agent_keys": "issue, rotate and revoke the keys of the agents you own",
    "products.manage_data_sources": "create and change data sources",
    "products.define_products": "create and edit draft data products",
    "products.publish_products": "publish data products",
    "products.grant_products": "grant data products to agents and revoke them",
    "policies.define_policies": "create policies, edit and test their drafts",
    "policies.publish_policies": "publish and retire policies",
    "policies.grant_policies": "grant policies to agents and revoke them",
    "approvals.manage_routes": "create and edit approval routes",
    "approvals.manage_integrations": (
        "manage webhook endpoints and webhook credentials (Slack integrations also need a superuser)"
    ),
    "oauth.manage_oauth_connections": "see and revoke every person's OAuth connections",
}

# Reading the admin data of an area: Django's own view permission, or any permission that changes it.
READERS: dict[str, tuple[str, ...]] = {
    "agents": ("agents.view_agent", "agents.manage_agents", "agents.manage_agent_keys"),
    "data_sources": ("products.view_datasource", "products.manage_data_sources"),
    "products": (
        "products.view_dataproduct",
        "products.define_products",
        "products.publish_products",
        "products.grant_products",
    ),
    "policies": (
        "policies.view_policy",
        "policies.define_policies",
        "policies.publish_policies",
        "policies.grant_policies",
    ),
    "routes": ("approvals.view_approvalroute", "approvals.manage_routes"),
    "webhook_endpoints": ("approvals.view_webhookendpoint", "approvals.manage_integrations"),
    "slack_integrations": ("approvals.view_slackintegration", "approvals.manage_integrations"),
    # Every approval and every decision, beyond those a reviewer's groups make visible.
    "approvals": ("approvals.view_approval",),
    "decisions": ("decisions.view_decision",),
    "oauth_connections": ("oauth.view_oauthconnection", "oauth.manage_oauth_connections"),
}


def has_perm(actor: Actor, perm: str) -> bool:
    """Whether the actor holds ``perm`` (an active user with it, an active superuser, the system)."""
    if actor.kind == "system":
        return True
    user = actor.user
    return actor.kind == "user" and user is not None and user.is_active and user.has_perm(perm)


def require_perm(actor: Actor, perm: str) -> None:
    """Refuse (``permission_denied``, naming the permission) unless the actor holds ``perm``."""
    if has_perm(actor, perm):
        return
    what = PERMISSIONS.get(perm, "do this")
    raise PermissionDenied(
        f"you need the permission {perm} to {what}; ask a superuser to grant it to you or to one of your groups",
        details={"permission": perm},
    )


def may_read(actor: Actor, area: str) -> bool:
    return any(has_perm(actor, perm) for perm in READERS[area])


def require_reader(actor: Actor, area: str) -> None:
    """Refuse unless the actor may read the admin data of ``area`` (see ``READERS``)."""
    if may_read(actor, area):
        return
    perms = READERS[area]
    raise PermissionDenied(
        f"you need the permission {perms[0]} (or one that changes {area.replace('_', ' ')}) to see them; "
        "ask a superuser to grant it",
        details={"permission": perms[0]},
    )


def user_is_superuser(user: Any) -> bool:
    """The one superuser rule: an *active* account with superuser status (``is_staff`` decides
    nothing). Every check of superuser status goes through here or :func:`is_superuser`."""
    return bool(getattr(user, "is_active", False) and getattr(user, "is_superuser", False))


def is_superuser(actor: Actor) -> bool:
    if actor.kind == "system":
        return True
    return actor.kind == "user" and user_is_superuser(actor.user)


def require_superuser(actor: Actor, what: str) -> None:
    if not is_superuser(actor):
        raise PermissionDenied(f"only an active superuser may {what}", details={"permission": "superuser"})


def may_connect_oauth(actor: Actor) -> bool:
    """Whether a person may connect an OAuth client (ChatGPT, ...) to an agent of theirs: every
    active user, or only members of ``TRACEMEM_OAUTH_CONNECT_GROUP`` (and superusers) when it is set."""
    user = actor.user
    if actor.kind != "user" or user is None or not user.is_active:
        return False
    group = str(getattr(settings, "TRACEMEM_OAUTH_CONNECT_GROUP", "") or "")
    return not group or user.is_superuser or user.groups.filter(name=group).exists()


def require_oauth_connect(actor: Actor) -> None:
    if not may_connect_oauth(actor):
        raise PermissionDenied(
            "your account may not connect OAuth clients to TraceMem; ask an administrator to add you to "
            "the group named in TRACEMEM_OAUTH_CONNECT_GROUP",
            details={"permission": "oauth_connect"},
        )
