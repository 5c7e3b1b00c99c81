from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from .models import ApiToken, Outbox, Widget


@admin.register(Widget)
class WidgetAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "created_at", "updated_at")
    search_fields = ("name",)


def task_choices():
    from .api import ENQUEUEABLE

    return [(name, name) for name in sorted(ENQUEUEABLE)]


class ApiTokenForm(forms.ModelForm):
    tasks = forms.MultipleChoiceField(
        choices=task_choices, required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiToken
        fields = ("name", "tasks", "may_start_report")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are shown once, in the message after "Save"; only their hash is stored."""

    form = ApiTokenForm
    list_display = ("name", "hint", "tasks", "may_start_report", "created_at", "revoked_at")
    list_filter = ("revoked_at", "may_start_report")
    search_fields = ("name", "hint")
    readonly_fields = ("hint", "created_at", "revoked_at")
    actions = ("revoke",)

    def save_model(self, request, obj, form, change):
        if not change:
            token = ApiToken.new_token()
            obj.key_hash = ApiToken.digest(token)
            obj.hint = token[: len(ApiToken.PREFIX) + 6]
            messages.warning(
                request,
                f"The token for {obj.name!r} is {token} — copy it now: it is not stored and "
                "will not be shown again.",
            )
        obj.tasks = sorted(set(obj.tasks))
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        messages.success(request, f"Revoked {count} token(s).")


@admin.register(Outbox)
class OutboxAdmin(admin.ModelAdmin):
    list_display = ("id", "task", "task_id", "created_at", "published_at", "expires_at")
    list_filter = ("task",)
    readonly_fields = tuple(field.name for field in Outbox._meta.fields)
