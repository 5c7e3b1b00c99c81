"""The dead-letter store, for operators (`make dlq ARGS="..."`).

    manage.py deadletter list [--reason R] [--queue Q] [--limit N]
    manage.py deadletter show ID
    manage.py deadletter replay ID... | --all [--reason R] [--queue Q]
    manage.py deadletter purge ID... | --all [--reason R] [--queue Q]

A replay publishes the message again, as it was, to its queue; its entry is deleted once the
task succeeds.
"""

import json

from django.core.management.base import BaseCommand, CommandError
from kombu.exceptions import OperationalError

from deadletter.models import DeadLetter
from deadletter.store import CannotReplay, replay


class Command(BaseCommand):
    help = "List, inspect, replay or purge dead letters."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="newest first")
        listing.add_argument("--limit", type=int, default=50)
        show = sub.add_parser("show", help="one entry in full (JSON)")
        show.add_argument("id", type=int)
        for name, text in (("replay", "publish again to its queue"), ("purge", "delete")):
            action = sub.add_parser(name, help=text)
            action.add_argument("ids", type=int, nargs="*", metavar="ID")
            action.add_argument("--all", action="store_true", help="every entry (with filters)")
        for action in (listing, *(sub.choices[n] for n in ("replay", "purge"))):
            action.add_argument("--reason", choices=DeadLetter.Reason.values)
            action.add_argument("--queue")

    def handle(self, *args, action, **options):
        getattr(self, f"handle_{action}")(**options)

    @staticmethod
    def selected(ids=(), all=False, reason=None, queue=None, **_options):
        if bool(ids) == bool(all):
            raise CommandError("name entries by ID, or give --all (with --reason/--queue)")
        entries = DeadLetter.objects.all()
        if ids:
            found = entries.filter(pk__in=ids).values_list("pk", flat=True)
            missing = sorted(set(ids) - set(found))
            if missing:
                raise CommandError(f"no dead letter with id {', '.join(map(str, missing))}")
            entries = entries.filter(pk__in=ids)
        if reason:
            entries = entries.filter(reason=reason)
        if queue:
            entries = entries.filter(queue=queue)
        return entries

    def handle_list(self, limit, reason=None, queue=None, **_options):
        entries = DeadLetter.objects.all()
        if reason:
            entries = entries.filter(reason=reason)
        if queue:
            entries = entries.filter(queue=queue)
        self.stdout.write(f"{entries.count()} dead letters")
        for e in entries[:limit]:
            replayed = f"  replayed {e.replayed_at:%Y-%m-%d %H:%M:%S}" if e.replayed_at else ""
            self.stdout.write(
                f"{e.pk:>6}  {e.created_at:%Y-%m-%d %H:%M:%S}  {e.reason:<20}  {e.queue or '-':<10}"
                f"  {e.task_name or '-'}[{e.task_id or '-'}]  {e.error[:80]}{replayed}"
            )

    def handle_show(self, id, **_options):
        entry = DeadLetter.objects.filter(pk=id).values().first()
        if entry is None:
            raise CommandError(f"no dead letter with id {id}")
        self.stdout.write(json.dumps(entry, indent=2, default=str))

    def handle_replay(self, **options):
        replayed = 0
        for entry in self.selected(**options):
            try:
                replay(entry)
            except (CannotReplay, OperationalError) as exc:
                raise CommandError(f"{exc} ({replayed} replayed before it)") from None
            replayed += 1
        self.stdout.write(f"{replayed} replayed; each entry goes once its task succeeds")

    def handle_purge(self, **options):
        deleted, _ = self.selected(**options).delete()
        self.stdout.write(f"{deleted} purged")
