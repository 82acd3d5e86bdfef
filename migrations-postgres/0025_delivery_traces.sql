-- The W3C traceparent of what queued a delivery (the ingest request of an immediate one), when
-- traces are exported: its attempts continue that trace. NULL otherwise.
ALTER TABLE deliveries ADD COLUMN trace_parent TEXT;
