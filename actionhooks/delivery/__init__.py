"""Transports, by delivery `type`, imported on first use so the API never loads a client library
(pika, confluent-kafka, redis-py's pipelines, nats-py, paho-mqtt, boto3).

Adding a transport: a config model in config.py (joined to the union), a module with the class,
and one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

from actionhooks.delivery.base import Batch, Receipt, Transport, attempt
from actionhooks.settings import Settings

REGISTRY: dict[str, str] = {
    "http": "actionhooks.delivery.http:HttpTransport",
    "rabbitmq_queue": "actionhooks.delivery.rabbitmq:RabbitMQQueueTransport",
    "rabbitmq_exchange": "actionhooks.delivery.rabbitmq:RabbitMQExchangeTransport",
    "kafka": "actionhooks.delivery.kafka:KafkaTransport",
    "redis_stream": "actionhooks.delivery.redis_stream:RedisStreamTransport",
    "nats": "actionhooks.delivery.nats:NatsTransport",
    "mqtt": "actionhooks.delivery.mqtt:MqttTransport",
    "sqs": "actionhooks.delivery.sqs:SqsTransport",
    "s3": "actionhooks.delivery.s3:S3Transport",
}


def transport_class(kind: str) -> type[Transport[Any]]:
    """The transport class registered for a delivery `type`."""
    module_name, _, class_name = REGISTRY[kind].partition(":")
    cls: type[Transport[Any]] = getattr(importlib.import_module(module_name), class_name)
    return cls


def make_transport(config: Any, settings: Settings) -> Transport[Any]:
    """A transport for a validated delivery config (one of delivery.config's models)."""
    return transport_class(config.type)(config, settings)


__all__ = ["REGISTRY", "Batch", "Receipt", "Transport", "attempt", "make_transport", "transport_class"]
