-- 0003_cluster: state several nodes share (postgres).
-- leases: one holder at a time for periodic cluster-wide work (audit checkpoints, CRL regeneration).
-- Correctness never depends on a lease (a paused holder that wakes up past its lease writes nothing that
-- conflicts: checkpoints are keyed by size, CRL numbers are taken under a row lock); leases avoid duplicate work.
CREATE TABLE leases (
	name       TEXT   NOT NULL PRIMARY KEY,
	holder     TEXT   NOT NULL,
	expires_us BIGINT NOT NULL
);

-- crls: every CRL signed, one row per shard and number; the newest of a shard is what every node serves.
CREATE TABLE crls (
	shard          INTEGER NOT NULL,
	number         BIGINT  NOT NULL,
	der            BYTEA   NOT NULL,
	this_update_us BIGINT  NOT NULL,
	next_update_us BIGINT  NOT NULL,
	entries_hash   BYTEA   NOT NULL,
	PRIMARY KEY (shard, number)
);

-- approvals: dual-control requests waiting for a second operator (any node, across restarts).
CREATE TABLE approvals (
	id           TEXT   NOT NULL PRIMARY KEY,
	operation    TEXT   NOT NULL,
	params       TEXT   NOT NULL,
	requested_by TEXT   NOT NULL,
	requester    TEXT   NOT NULL,
	requester_dn BYTEA  NOT NULL,
	created_us   BIGINT NOT NULL,
	expires_us   BIGINT NOT NULL,
	status       TEXT   NOT NULL,
	approved_by  TEXT   NOT NULL
);

-- ocsp_responses: the pre-signed OCSP responses of each certificate (SHA-1 and SHA-256 CertIDs), so a node
-- starts warm and every node serves the same bytes. cert_version is the certificate record's updated time the
-- responses were signed from: an older one never replaces a newer one.
CREATE TABLE ocsp_responses (
	serial         TEXT    NOT NULL PRIMARY KEY,
	status         TEXT    NOT NULL,
	cert_version   BIGINT  NOT NULL,
	this_update_us BIGINT  NOT NULL,
	next_update_us BIGINT  NOT NULL,
	der_sha1       BYTEA   NOT NULL,
	der_sha256     BYTEA   NOT NULL,
	responder      BYTEA   NOT NULL
);
