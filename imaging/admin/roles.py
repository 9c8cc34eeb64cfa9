"""Admin pages for local roles: what a data store's bearer-token authorizer names in its roleArn (SPEC 12.6). A
role's policy is a managed one or a custom IAM-style document, validated like an access key's."""
from __future__ import annotations

from django import forms
from django.contrib import admin

from imaging.models import ManagedPolicy, Role
from imaging.policies import PolicyError, validate_policy


class RoleForm(forms.ModelForm):
    class Meta:
        model = Role
        fields = ["name", "description", "policy", "policy_document"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("policy") == ManagedPolicy.CUSTOM:
            try:
                validate_policy(cleaned.get("policy_document"))
            except PolicyError as e:
                self.add_error("policy_document", f"Invalid policy document: {e}")
        else:
            cleaned["policy_document"] = None
        return cleaned


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    form = RoleForm
    list_display = ["name", "policy", "description", "created_at"]
    search_fields = ["name", "description"]

    def get_readonly_fields(self, request, obj=None):
        return ["name"] if obj is not None else []
