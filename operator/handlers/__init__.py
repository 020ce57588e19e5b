"""kopf decorators only: each handler is a few lines that call into reconcile/.

Importing this package registers every handler with kopf's default registry.
"""

from hastack_operator.handlers import clusters, indexes, monitors, startup, volumes

__all__ = ["clusters", "indexes", "monitors", "startup", "volumes"]
