"""Nothing PostgreSQL-related is imported for SQLite targets."""
