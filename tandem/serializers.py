"""Serializer helpers shared by the apps' APIs."""

from rest_framework import serializers


class RejectUnknownFieldsMixin:
    """Refuse input fields the serializer does not know (a 400 naming them) instead of dropping
    them silently: a typo in a setting must not look like success. Read-only fields sent back
    as they were read are still ignored."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)
