//! PostgreSQL adapter of the eventsource framework (in progress).
