"""The recommendation service: FastAPI app factory (app.create_app), schemas, the model wrapper, user state,
the Redis/LRU cache behind a circuit breaker, the durable interaction log and the A/B test."""
