"""Re-encrypt every encrypted column under the current CRYPTOGRAPHY_KEY.

Procedure (README, "Rotating the encryption key"):
1. set CRYPTOGRAPHY_KEY=<new> and CRYPTOGRAPHY_KEY_FALLBACKS=<old> everywhere, restart;
2. run this command (safe to interrupt and rerun: each row is rewritten in its own small
   transaction, and rewriting a row already under the new key changes nothing that matters);
3. run it with --check: it fails unless every value decrypts with the new key alone;
4. remove the old key from CRYPTOGRAPHY_KEY_FALLBACKS.
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django_cryptography.fields import EncryptedMixin

from provisioner.crypto import KeyRing


def encrypted_fields():
    for model in apps.get_models():
        fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedMixin)]
        if fields:
            yield model, fields


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field with the current CRYPTOGRAPHY_KEY (rotation)."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="only verify every value decrypts with the current key alone")
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, *args, check: bool, batch_size: int, **options):
        ring = KeyRing()
        stale_total = 0
        for model, fields in encrypted_fields():
            label = model._meta.label
            columns = [f.column for f in fields]
            pks = list(model._base_manager.order_by("pk").values_list("pk", flat=True))
            rewritten = stale = 0
            for start in range(0, len(pks), batch_size):
                batch = pks[start:start + batch_size]
                if check:
                    stale += self._count_stale(model, columns, batch, ring)
                    continue
                with transaction.atomic():
                    for obj in model._base_manager.select_for_update().filter(pk__in=batch).only("pk", *[f.attname for f in fields]):
                        obj.save(update_fields=[f.attname for f in fields])
                        rewritten += 1
            if check:
                stale_total += stale
                self.stdout.write(f"{label}: {len(pks)} rows, {stale} not readable with the current key alone")
            else:
                self.stdout.write(f"{label}: re-encrypted {rewritten} rows")
        if check and stale_total:
            raise CommandError(f"{stale_total} values still need the old key; run without --check first")

    @staticmethod
    def _count_stale(model, columns, batch, ring: KeyRing) -> int:
        table = connection.ops.quote_name(model._meta.db_table)
        pk_col = connection.ops.quote_name(model._meta.pk.column)
        cols = ", ".join(connection.ops.quote_name(c) for c in columns)
        params = [model._meta.pk.get_db_prep_value(pk, connection) for pk in batch]
        placeholders = ", ".join(["%s"] * len(batch))
        stale = 0
        with connection.cursor() as cur:
            cur.execute(f"SELECT {cols} FROM {table} WHERE {pk_col} IN ({placeholders})", params)
            for row in cur.fetchall():
                for value in row:
                    if value is not None and not ring.decrypts_with_current_key(bytes(value)):
                        stale += 1
        return stale
