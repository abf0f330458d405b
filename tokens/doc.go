// Package tokens issues and follows HIX adapter tokens: the registries of facilities and physicians that
// decide who may hold one (DOMAIN.md "Who may get one"), eligibility checks the CA and the verifiers call,
// facility enrolment with one-time codes, token issuance onto a PKCS#11 device or into an encrypted software
// keystore (PKCS#8 PBES2, PKCS#12), and a sync job that suspends or revokes tokens when a facility's standing
// lapses.
//
// The package declares what it needs from the rest of Mohr as small interfaces: CertIssuer (the CA's
// facility-adapter profile), Revoker (the CA's revocation) and Store (persistence of the registries, the
// enrolment codes and the tokens). MemStore implements Store for tests; package tokens/sqlstore implements it
// on database/sql (SQLite and PostgreSQL).
//
// The package never logs. Errors start with "tokens:"; conditions callers branch on are sentinels
// (ErrCodeUsed, ErrCodeExpired, ErrNotEligible, ErrWrongSIAM, ErrBadPassword, ...) wrapped with %w. Errors
// never carry an enrolment code or a password.
package tokens
