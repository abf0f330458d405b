// Package revocation revokes, holds and releases certificates and publishes their status: sharded CRLs
// (RFC 5280 §5) and an OCSP responder (RFC 6960, in the RFC 5019 lightweight profile, with the RFC 8954
// nonce).
//
// The package knows no HTTP: the API layer mounts Responder.Respond, Responder.RespondGET and
// CRLPublisher.CRL on its router and sets the headers CacheHeaders returns. It never logs; revocations and
// published CRLs are recorded as audit events through the ca.Store, in the same transaction as the change.
//
// Three parts:
//   - Service validates a revocation reason (RFC 5280 §5.3.1) and a certificate's state, builds the audit
//     event, calls the store and tells the CRL publisher and the OCSP responder.
//   - CRLPublisher signs one CRL per shard with the CA key, each carrying an issuing distribution point
//     (RFC 5280 §5.2.5) equal to the CRL distribution point of the certificates in that shard, and keeps
//     the newest DER per shard in memory for serving.
//   - Responder answers OCSP requests from a cache of pre-signed responses, one per certificate and CertID
//     hash, signed by a short-lived delegated responder certificate (RFC 6960 §4.2.2.2) that it issues
//     and renews itself. Only a request with a nonce, or for a serial the cache does not hold, costs a
//     signature.
package revocation
