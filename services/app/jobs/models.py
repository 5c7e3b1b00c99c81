import hashlib
import secrets
import uuid

from django.db import models


class Widget(models.Model):
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("id",)

    def __str__(self):
        return self.name


class ApiToken(models.Model):
    """A bearer token for the JSON API. Only its SHA-256 is stored: the token itself is shown
    once, when it is created (admin or `manage.py api_token create`)."""

    PREFIX = "cst_"

    name = models.CharField(max_length=100, unique=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the token, so operators can tell tokens apart in the admin.
    hint = models.CharField(max_length=12, editable=False)
    # Short task names (see jobs/api.py ENQUEUEABLE) this token may enqueue.
    tasks = models.JSONField(default=list, blank=True)
    may_start_report = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("id",)
        permissions = (
            ("use_progress_page", "Can start jobs from the progress page (session login)"),
        )

    def __str__(self):
        return f"{self.name} ({self.hint}…)"

    @classmethod
    def new_token(cls) -> str:
        # 256 random bits: a plain SHA-256 is enough, no slow hash needed to resist guessing.
        return cls.PREFIX + secrets.token_urlsafe(32)

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, name: str, tasks: list[str], may_start_report: bool = False):
        """Create a token; returns (ApiToken, the token in clear: show it once, never store it)."""
        token = cls.new_token()
        instance = cls.objects.create(
            name=name,
            key_hash=cls.digest(token),
            hint=token[: len(cls.PREFIX) + 6],
            tasks=sorted(set(tasks)),
            may_start_report=may_start_report,
        )
        return instance, token

    @classmethod
    def authenticate(cls, token: str):
        """The active token with this value, or None."""
        return cls.objects.filter(key_hash=cls.digest(token), revoked_at__isnull=True).first()

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Outbox(models.Model):
    """A task promised by a transaction, written in that transaction (jobs/outbox.py).

    It is published after the commit, or by the beat task `drain_outbox` if the broker was down,
    with the row's own task id; the copy that runs claims the row, so a second copy (a relay
    that published but died before marking the row) is skipped instead of run."""

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    # apply_async options that survive JSON: queue, priority, countdown (from created_at).
    options = models.JSONField(default=dict)
    task_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # A task that is useless when late (the password-reset mail) is dropped unsent after this.
    expires_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The published copy that ran (its outbox_copy header); any other copy is a duplicate.
    claimed_by = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        ordering = ("id",)
        verbose_name_plural = "outbox"
        indexes = (
            # The drain's scan and the metrics companion's oldest-pending age.
            models.Index(
                fields=["created_at"],
                condition=models.Q(published_at__isnull=True),
                name="jobs_outbox_pending",
            ),
        )

    def __str__(self):
        return f"{self.task}[{self.task_id}]"


class BeatLease(models.Model):
    """Which beat process may send periodic tasks: the one whose lease has not expired.

    config/beat.py takes and renews it with one conditional write, on the database's clock, so
    a second beat (a `--scale beat=2`, an overlapping rollout) stands by instead of sending every
    periodic task twice, and takes over when the holder stops renewing.
    """

    name = models.CharField(primary_key=True, max_length=64)
    holder = models.CharField(max_length=255)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: {self.holder} until {self.expires_at:%Y-%m-%d %H:%M:%S}"
