import pytest
from django.core.exceptions import ValidationError

from accounts.services import user_create, user_token


@pytest.mark.django_db
def test_roles_map_to_django_flags():
    admin = user_create(username="a", role="admin", password="correct-horse-battery")
    manager = user_create(username="m", role="manager", password="correct-horse-battery")
    annotator = user_create(username="x", role="annotator", password="correct-horse-battery")
    assert admin.is_superuser and admin.is_admin and admin.is_manager
    assert manager.is_manager and not manager.is_admin and not manager.is_superuser
    assert not annotator.is_manager and not annotator.is_staff
    assert annotator.check_password("correct-horse-battery")


@pytest.mark.django_db
def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown role"):
        user_create(username="a", role="boss")
    with pytest.raises(ValidationError):
        user_create(username="not valid!", role="annotator")


@pytest.mark.django_db
def test_token_is_stable():
    user = user_create(username="t", role="annotator")
    assert user_token(user=user) == user_token(user=user)


@pytest.mark.django_db
def test_weak_passwords_are_refused_on_every_path():
    """The service (so createuser too) runs Django's password validators."""
    for weak in ("a", "password", "12345678"):
        with pytest.raises(ValidationError):
            user_create(username="weak", role="annotator", password=weak)
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="too short"):
        call_command("createuser", "weak", "--password", "a")


@pytest.mark.django_db
def test_admin_refuses_weak_passwords(client):
    from accounts.models import User
    from tests.factories import UserFactory

    admin = UserFactory(role="admin", is_staff=True, is_superuser=True)
    client.force_login(admin)
    response = client.post(
        "/admin/accounts/user/add/",
        {"username": "newbie", "password1": "a", "password2": "a", "usable_password": "true"},
    )
    assert response.status_code == 200
    assert b"too short" in response.content
    assert not User.objects.filter(username="newbie").exists()
    user = UserFactory()
    response = client.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {"password1": "123", "password2": "123", "usable_password": "true"},
    )
    assert response.status_code == 200 and b"too short" in response.content
