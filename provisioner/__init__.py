from .celery import app as celery_app
from .crypto import install as _install_keyring

# Before any model is imported: encrypted fields use our key ring (see provisioner/crypto.py).
_install_keyring()

__all__ = ("celery_app",)
