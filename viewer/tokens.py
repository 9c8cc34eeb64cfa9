"""The "API tokens" page: a signed-in user lists their personal access tokens, creates one (shown once, on the page
that answers the creation, never kept in the session or a message) and revokes one. The tokens are bearer
credentials for DICOMweb only (imaging/services/accesstokens.py says what they may do)."""
from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from imaging.errors import ApertureError
from imaging.selectors import datastores_readable
from imaging.services.accesstokens import MAX_DAYS, accesstoken_create, accesstoken_revoke, accesstokens_of


class TokenForm(forms.Form):
    name = forms.CharField(max_length=128, required=False)
    datastore = forms.ChoiceField(required=False, help_text="Blank: every data store you may read")
    days = forms.IntegerField(min_value=1, max_value=MAX_DAYS, required=False, initial=90,
                              help_text="Blank: never expires")

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["datastore"].choices = [("", "All my data stores")] + [
            (datastore.id, datastore.name) for datastore in datastores_readable(user=user).order_by("name")]


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None, user=request.user)
    issued = None
    if request.method == "POST" and form.is_valid():
        try:
            issued = accesstoken_create(user=request.user, name=form.cleaned_data["name"],
                                        datastore_id=form.cleaned_data["datastore"] or None,
                                        days=form.cleaned_data["days"])
        except ApertureError as e:
            form.add_error(None, e.message)
        else:
            form = TokenForm(user=request.user)
    response = render(request, "viewer/tokens.html", {"form": form, "issued": issued,
                                                      "tokens": accesstokens_of(user=request.user)})
    # The page that shows a token must not be cached anywhere.
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: str) -> HttpResponse:
    try:
        accesstoken_revoke(token_id=token_id, user=request.user)
    except ApertureError:
        pass  # not this user's token, or none: the list shows what there is
    return redirect("viewer:tokens")
