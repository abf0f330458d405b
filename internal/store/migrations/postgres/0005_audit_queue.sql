-- 0005_audit_queue: the audit events of the issuance path's grouped changes (intents, issued certificates,
-- prescriptions) are committed with their change into this queue, without the audit head's lock, and moved into
-- the chained log by one transaction at a time for the whole cluster (internal/store/groupcommit.go): the nodes'
-- changes commit concurrently and the chain is extended with all of them at once.
CREATE TABLE audit_queue (
  id BIGSERIAL PRIMARY KEY,
  event TEXT NOT NULL,
  -- when it was queued, by the database's clock: grouped changes are refused while the oldest waits too long
  queued_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
