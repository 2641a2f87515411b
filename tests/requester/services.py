"""The shared test services (``tests.services``), under the name the requester tests use."""

from tests.services import postgres_database, rabbit_vhost, rabbitmqctl, vhost_of

__all__ = ["postgres_database", "rabbit_vhost", "rabbitmqctl", "vhost_of"]
