from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from .models import Role


class InviteForm(forms.Form):
    """Invite by e-mail address: the invitee accepts through the link (never added by name)."""

    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.DEVELOPER)


class InviteeSignupForm(UserCreationForm):
    """A new account for the holder of an invitation link (its e-mail is the invitation's)."""

    class Meta(UserCreationForm.Meta):
        fields = ("username",)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)

