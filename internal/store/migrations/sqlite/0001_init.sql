-- 0001_init: certificates, CRL numbers, blobs and the audit log (SQLite).
-- Times are microseconds since the Unix epoch (0: none), so both dialects store and compare them alike.
CREATE TABLE certificates (
	serial            TEXT    NOT NULL PRIMARY KEY,
	profile           TEXT    NOT NULL,
	subject           TEXT    NOT NULL,
	subject2          TEXT    NOT NULL,
	not_before_us     BIGINT  NOT NULL,
	not_after_us      BIGINT  NOT NULL,
	tbs_hash          BLOB    NOT NULL,
	der               BLOB,
	status            TEXT    NOT NULL,
	shard             INTEGER NOT NULL,
	revoked_at_us     BIGINT  NOT NULL DEFAULT 0,
	revocation_reason INTEGER NOT NULL DEFAULT 0,
	created_us        BIGINT  NOT NULL,
	updated_us        BIGINT  NOT NULL
);
CREATE INDEX certificates_shard_status ON certificates (shard, status, not_after_us);
CREATE INDEX certificates_subject2 ON certificates (subject2);
CREATE INDEX certificates_profile ON certificates (profile, serial);

CREATE TABLE crl_numbers (
	shard  INTEGER NOT NULL PRIMARY KEY,
	number BIGINT  NOT NULL
);

CREATE TABLE blobs (
	name       TEXT   NOT NULL PRIMARY KEY,
	data       BLOB   NOT NULL,
	updated_us BIGINT NOT NULL
);

-- audit_log holds each entry's canonical event (audit.CanonicalJSON) and its chain hashes.
CREATE TABLE audit_log (
	seq   BIGINT NOT NULL PRIMARY KEY,
	event TEXT   NOT NULL,
	prev  BLOB   NOT NULL,
	hash  BLOB   NOT NULL
);

-- audit_hashes holds the Merkle tree's stored hashes (golang.org/x/mod/sumdb/tlog.StoredHashIndex).
CREATE TABLE audit_hashes (
	idx  BIGINT NOT NULL PRIMARY KEY,
	hash BLOB   NOT NULL
);

-- audit_head is the one row every append locks: the log's size and the chain hash of its last entry.
CREATE TABLE audit_head (
	id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	size BIGINT  NOT NULL,
	head BLOB    NOT NULL
);
INSERT INTO audit_head (id, size, head) VALUES (1, 0, zeroblob(32));

CREATE TABLE audit_checkpoints (
	size       BIGINT NOT NULL PRIMARY KEY,
	note       TEXT   NOT NULL,
	created_us BIGINT NOT NULL
);
