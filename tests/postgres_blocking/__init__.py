"""The blocking adapter on PostgreSQL: the core's operations through psycopg, interop with simplebroker-pg."""
