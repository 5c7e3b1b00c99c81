from django.contrib import admin, messages
from kombu.exceptions import OperationalError

from .models import DeadLetter
from .store import CannotReplay, replay


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "reason", "queue", "task_name", "task_id", "replayed_at")
    list_filter = ("reason", "queue")
    search_fields = ("task_id", "task_name", "error")
    date_hierarchy = "created_at"
    actions = ("replay_selected",)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]  # what arrived, as it arrived

    def has_add_permission(self, request):
        return False

    @admin.action(description="Replay to their queues (deleted once the task succeeds)")
    def replay_selected(self, request, queryset):
        replayed = 0
        for entry in queryset:
            try:
                replay(entry)
                replayed += 1
            except (CannotReplay, OperationalError) as exc:
                self.message_user(request, f"entry {entry.pk}: {exc}", messages.ERROR)
        self.message_user(request, f"{replayed} replayed")
