// Package signing implements HIX-Rx-CAdES, the signature profile of electronic prescriptions in the Health
// Information Exchange (docs/signature-policy.md): CMS SignedData (RFC 5652) enveloping a FHIR R4 Bundle, made
// at level B-B by the prescriber with any crypto.Signer (Sign), and upgraded by the exchange to B-T with an
// RFC 3161 signature timestamp (AddSignatureTimestamp), to B-LT with OCSP responses (RFC 6960) and certificates
// (AddValidationData) and to B-LTA with archive timestamps (AddArchiveTimestamp), after ETSI EN 319 122-1.
//
// It also holds the core of an RFC 3161 time-stamping service (TSA) and an HTTP client for one
// (HTTPTimestamper); a Verifier that validates signatures after ETSI EN 319 102-1 and returns a Report with an
// indication and sub-indication; the Ingestor the exchange runs on arrival; and a BatchVerifier for bulk
// verification. The package serves no HTTP and never logs; the api package wires it to endpoints.
package signing
