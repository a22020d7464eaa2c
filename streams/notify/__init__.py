"""The notifier: decisions, the Kafka loop and the delivery channels."""
