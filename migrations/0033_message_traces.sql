-- The W3C traceparent of the request that brought a message, when traces are exported; and a
-- bundle's links to its messages' traces (their traceparents, space-separated, at most 32).
ALTER TABLE messages ADD COLUMN trace_parent TEXT;
ALTER TABLE deliveries ADD COLUMN trace_links TEXT;
