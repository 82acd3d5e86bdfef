-- The oldest waiting delivery, for the queue-age metric, without walking delivered rows.
CREATE INDEX deliveries_pending ON deliveries (seq) WHERE status = 'pending';
