"""mqspec: RabbitMQ topology, workload and expectations in one file."""

__version__ = "0.1.0"
