"""Two-factor sign-in with TOTP (django-otp): enrolment, the sign-in check, turning it off.

django-otp rather than django-allauth's MFA: TraceMem signs people in with Django's own
``LoginView`` and sessions, and django-otp adds exactly one thing to that (a verified device per
session, ``request.user.is_verified()``) without replacing the account system, its URLs or its
templates. Its TOTP device also brings the parts that are easy to get wrong: one-time use of each
code (``last_t``), clock-drift tolerance and exponential throttling of wrong codes.

Each person has at most one TOTP device. Who *must* use it is decided by
``approvals.selectors.second_factor_required`` (anyone who turned it on; with
``TRACEMEM_REQUIRE_2FA_FOR_APPROVERS`` everyone eligible to approve).
"""

from __future__ import annotations

from base64 import b32encode

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from agents.selectors import confirmed_device
from approvals.selectors import second_factor_required_by_policy
from tracemem_core.actor import Actor
from tracemem_core.errors import Conflict, InvalidArgument, PermissionDenied

DEVICE_NAME = "authenticator app"


def secret_for_display(device: TOTPDevice) -> str:
    """The base32 secret people type into an authenticator app, in groups of four."""
    secret = b32encode(device.bin_key).decode()
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _signed_in_user(actor: Actor) -> User:
    if actor.kind != "user" or actor.user is None:
        raise PermissionDenied("only a signed-in person can manage two-factor sign-in")
    return actor.user


def _code_refusal(device: TOTPDevice, code: object) -> InvalidArgument | PermissionDenied | None:
    """Check ``code`` against ``device`` (django-otp records the try: throttling, one-time use)."""
    allowed, info = device.verify_is_allowed()
    if not allowed:
        until = (info or {}).get("locked_until")
        wait = max(int((until - timezone.now()).total_seconds()), 1) if until else 1
        return PermissionDenied(f"too many wrong codes; wait {wait} seconds and try the newest code")
    cleaned = str(code or "").replace(" ", "")
    if cleaned.isdigit() and len(cleaned) == device.digits and device.verify_token(cleaned):
        return None
    if not (cleaned.isdigit() and len(cleaned) == device.digits):
        device.throttle_increment()  # a malformed code is a wrong guess too
    return InvalidArgument(
        "that code did not match: type the 6-digit code your authenticator app shows now "
        "(and check that the phone's clock is right)",
        field="code",
    )


def _device_accepting(user: User, code: object, *, confirmed: bool, missing: str) -> TOTPDevice:
    """The person's (confirmed or pending) device once it accepted ``code``; confirming a pending one.

    A wrong code is raised only after the transaction, so what django-otp recorded of the try
    (throttling) is committed, not rolled back with the refusal.
    """
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=confirmed).first()
        if device is None:
            raise Conflict(missing)
        refusal = _code_refusal(device, code)
        if refusal is None and not confirmed:
            device.confirmed = True
            device.save(update_fields=["confirmed"])
    if refusal is not None:
        raise refusal
    return device


@transaction.atomic
def totp_enrolment_start(*, actor: Actor) -> TOTPDevice:
    """The person's unconfirmed device (made on first visit), whose secret the enrolment page shows.

    ``conflict`` when two-factor sign-in is already on: turn it off first to change phones.
    """
    user = _signed_in_user(actor)
    if confirmed_device(user) is not None:
        raise Conflict("two-factor sign-in is already on; turn it off first to set up another phone")
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    return device


def totp_enrolment_confirm(*, actor: Actor, code: object) -> TOTPDevice:
    """Turn two-factor sign-in on once the person proves their app shows the right codes."""
    return _device_accepting(
        _signed_in_user(actor),
        code,
        confirmed=False,
        missing="there is no set-up in progress; open the two-factor page again",
    )


def totp_verify(*, actor: Actor, code: object) -> TOTPDevice:
    """The second sign-in step: the device that accepted ``code`` (each code works once)."""
    return _device_accepting(
        _signed_in_user(actor),
        code,
        confirmed=True,
        missing="two-factor sign-in is not set up for this account",
    )


@transaction.atomic
def totp_disable(*, actor: Actor) -> None:
    """Turn two-factor sign-in off; refused while it is required of this person."""
    user = _signed_in_user(actor)
    if second_factor_required_by_policy(user):
        raise PermissionDenied(
            "two-factor sign-in is required for everyone who may approve; it cannot be turned off"
        )
    TOTPDevice.objects.filter(user=user).delete()
