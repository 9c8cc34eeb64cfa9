"""Admin pages for DICOM nodes: the list (AE title, address, what each may do, TLS, which data stores it may call),
add and edit with the same checks as `manage.py dicom_node`, and C-ECHO (an action on the list, a button on a node's page). Writes and the echo go
through imaging.services.dicom_nodes, which audits them."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from imaging.models import Datastore, DatastoreStatus, DicomNode
from imaging.services.audit import client_ip
from imaging.services.dicom_nodes import (
    NODE_FIELDS,
    Actor,
    dicom_node_create,
    dicom_node_delete,
    dicom_node_echo,
    dicom_node_update,
)


def admin_actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user, source_ip=client_ip(request.META),
                 user_agent=request.META.get("HTTP_USER_AGENT", "")[:256])


class DicomNodeForm(forms.ModelForm):
    port = forms.IntegerField(min_value=1, max_value=65535)

    class Meta:
        model = DicomNode
        fields = [*NODE_FIELDS, "datastores"]
        help_texts = {
            "ae_title": "The node's AE title: 1 to 16 printable characters, no backslash, compared exactly.",
            "host": "Where Aperture connects to it (C-MOVE, Send to, C-ECHO); with APERTURE_DICOM_ALLOW_ANY=false "
                    "also the only address it may call from.",
            "may_store": "May send C-STORE to Aperture.",
            "may_query": "May send C-FIND.",
            "may_retrieve": "May send C-MOVE and C-GET.",
            "use_tls": "Aperture speaks DICOM TLS when it connects to this node.",
            "datastores": "With APERTURE_DICOM_ALLOW_ANY=false, the data stores whose AE titles it may call; none "
                          "chosen means every data store. Any node may still be a C-MOVE destination or a Send to "
                          "target.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["datastores"].queryset = Datastore.objects.exclude(status=DatastoreStatus.DELETED)

    def clean_host(self) -> str:
        host = self.cleaned_data["host"].strip()
        if not host or any(c.isspace() for c in host):
            raise forms.ValidationError("Give a host name or an IP address.")
        return host


@admin.register(DicomNode)
class DicomNodeAdmin(admin.ModelAdmin):
    form = DicomNodeForm
    list_display = ["ae_title", "address", "permissions", "callable_datastores", "use_tls", "description"]
    list_filter = ["may_store", "may_query", "may_retrieve", "use_tls"]
    filter_horizontal = ["datastores"]
    search_fields = ["ae_title", "host", "description"]
    actions = ["echo"]
    change_form_template = "admin/imaging/dicomnode_change_form.html"

    @admin.display(description="Address", ordering="host")
    def address(self, obj: DicomNode) -> str:
        return f"{obj.host}:{obj.port}"

    @admin.display(description="May")
    def permissions(self, obj: DicomNode) -> str:
        allowed = [name for name, flag in (("store", obj.may_store), ("query", obj.may_query),
                                           ("retrieve", obj.may_retrieve)) if flag]
        return ", ".join(allowed) or "–"

    @admin.display(description="Data stores")
    def callable_datastores(self, obj: DicomNode) -> str:
        names = [datastore.name for datastore in obj.datastores.all()]
        return ", ".join(names) or "all"

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).prefetch_related("datastores")

    def save_model(self, request, obj, form, change) -> None:
        fields = {name: form.cleaned_data[name] for name in NODE_FIELDS}
        datastore_ids = [datastore.pk for datastore in form.cleaned_data["datastores"]]
        if change:
            dicom_node_update(actor=admin_actor(request), node_id=obj.pk, datastore_ids=datastore_ids, **fields)
        else:
            obj.pk = dicom_node_create(actor=admin_actor(request), datastore_ids=datastore_ids, **fields).pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change) -> None:
        # save_model wrote the data stores through the service (checked and audited); the form must not write them
        # again behind the audit row.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request, obj) -> None:
        dicom_node_delete(actor=admin_actor(request), node_id=obj.pk)

    def delete_queryset(self, request, queryset) -> None:
        for node in queryset:
            dicom_node_delete(actor=admin_actor(request), node_id=node.pk)

    @admin.action(description="C-ECHO the selected nodes")
    def echo(self, request: HttpRequest, queryset) -> None:
        for node in queryset:
            self._echo(request, node)

    def _echo(self, request: HttpRequest, node: DicomNode) -> None:
        result = dicom_node_echo(node, actor=admin_actor(request))
        self.message_user(request, result.message, messages.SUCCESS if result.ok else messages.ERROR)

    def get_urls(self):
        extra = [path("<int:node_id>/echo/", self.admin_site.admin_view(self.echo_view),
                      name="imaging_dicomnode_echo")]
        return extra + super().get_urls()

    def echo_view(self, request: HttpRequest, node_id: int):
        """The C-ECHO button of a node's page (POST: it opens an association and writes an audit row)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        self._echo(request, get_object_or_404(DicomNode, pk=node_id))
        return HttpResponseRedirect(reverse("admin:imaging_dicomnode_change", args=[node_id]))
