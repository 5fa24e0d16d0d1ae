"""Test clients for the server-rendered pages, one per role (``who``: a fixture name)."""

from django.test import Client


def client_for(user=None) -> Client:
    """A client logged in as ``user`` (anonymous for None)."""
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def user_for(request, who: str):
    """The user of a role fixture (``admin``, ``manager``, ``annotator``, ``outsider``), or None
    for ``anonymous``."""
    if who == "anonymous":
        return None
    return request.getfixturevalue("admin_user" if who == "admin" else who)
