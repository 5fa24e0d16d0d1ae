"""Creating users with a role, and their API tokens."""

import secrets

from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from rest_framework.authtoken.models import Token

from .models import Role, User


@transaction.atomic
def user_create(*, username: str, role: str, password: str | None = None, email: str = "") -> User:
    """Create a user with ``role``; admins get Django's staff and superuser flags too.

    A given password must pass Django's validators (AUTH_PASSWORD_VALIDATORS): ValidationError.
    """
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")
    is_admin = role == Role.ADMIN
    user = User(
        username=username,
        email=email,
        role=role,
        is_staff=is_admin or role == Role.MANAGER,
        is_superuser=is_admin,
    )
    if password is not None:
        validate_password(password, user)
    user.set_password(password or secrets.token_urlsafe(12))
    user.full_clean()
    user.save()
    return user


def user_token(*, user: User) -> str:
    """The user's API token, made on first use."""
    token, _ = Token.objects.get_or_create(user=user)
    return token.key
