SELECT e.name, e.schema_version, e.payload FROM events e WHERE e.stream_id = $$account-7$$ AND e.version >= 1 ORDER BY e.version LIMIT 5001;
