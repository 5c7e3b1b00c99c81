"""Create, list and revoke API tokens.

    manage.py api_token create --name ci --tasks add,long_job [--report]
    manage.py api_token list
    manage.py api_token revoke --name ci

`create` prints the token once; only its SHA-256 is stored.
"""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from jobs.api import ENQUEUEABLE
from jobs.models import ApiToken


class Command(BaseCommand):
    help = "Create, list or revoke bearer tokens for the JSON API."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a token and print it (once)")
        create.add_argument("--name", required=True)
        create.add_argument(
            "--tasks",
            default="",
            help=f"comma-separated task names it may enqueue: {', '.join(sorted(ENQUEUEABLE))}",
        )
        create.add_argument("--report", action="store_true", help="may start the report")
        revoke = sub.add_parser("revoke", help="revoke a token by name")
        revoke.add_argument("--name", required=True)
        sub.add_parser("list", help="list tokens (names, hints, scopes; never the tokens)")

    def handle(self, *args, action, **options):
        getattr(self, f"handle_{action}")(**options)

    def handle_create(self, name, tasks, report, **_options):
        names = [task.strip() for task in tasks.split(",") if task.strip()]
        unknown = sorted(set(names) - set(ENQUEUEABLE))
        if unknown:
            raise CommandError(
                f"Unknown task(s): {', '.join(unknown)}. Known: {', '.join(sorted(ENQUEUEABLE))}."
            )
        if not names and not report:
            raise CommandError("A token needs --tasks, --report or both.")
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(f"A token named {name!r} exists; revoke it or pick another name.")
        _, token = ApiToken.issue(name, names, may_start_report=report)
        self.stderr.write(f"Token {name!r} created. It is shown once; store it now.")
        self.stdout.write(token)

    def handle_revoke(self, name, **_options):
        updated = ApiToken.objects.filter(name=name, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if not updated:
            raise CommandError(f"No active token named {name!r}.")
        self.stdout.write(f"Revoked {name!r}.")

    def handle_list(self, **_options):
        for token in ApiToken.objects.all():
            state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
            scope = ",".join(token.tasks) + (" +report" if token.may_start_report else "")
            self.stdout.write(f"{token.name}\t{token.hint}…\t{scope}\t{state}")
