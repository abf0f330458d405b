-- 0004_prescription_archive: who submitted a prescription (the API caller's identity, for read access), and
-- when its archive timestamp is next due (archive-timestamp renewal, docs/signature-policy.md §4).
ALTER TABLE prescriptions ADD COLUMN submitter TEXT NOT NULL DEFAULT '';
ALTER TABLE prescriptions ADD COLUMN archive_due_us BIGINT NOT NULL DEFAULT 0;
CREATE INDEX prescriptions_archive_due ON prescriptions (archive_due_us);
