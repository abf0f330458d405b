package api

import (
	"context"
	"crypto/x509"
	"io"
	"time"

	"github.com/mohr-hix/mohr/api/web"
	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// The interfaces below are what the handlers need; the packages that implement them (ca, signing, tokens,
// internal/audit, the registries) need not import api: Go interfaces are satisfied implicitly. Where a method
// takes an actor string, it is Identity.Actor() ("api:<role>:<subject>"), for the implementation's audit event.
//
// Errors: implementations return their own errors. api maps ca.ErrNotFound to 404, ca.ErrConflict and
// ca.ErrDuplicateSerial to 409, the internal/ids errors to 422, and otherwise looks for these methods with
// errors.As: NotFound() bool (404), Conflict() bool (409), Invalid() bool (422), Denied() bool (403), Unavailable() bool (503). Anything
// else is a 500 whose text only the access log sees.

// SubjectIDs are the identifiers a certificate is to be bound to. Which are required depends on the profile.
type SubjectIDs struct {
	CommonName    string   `json:"commonName,omitempty"`
	SIAMID        string   `json:"siamId,omitempty"`
	LicenceNumber string   `json:"licenceNumber,omitempty"`
	NationalCode  string   `json:"nationalCode,omitempty"`
	CouncilNumber string   `json:"councilNumber,omitempty"`
	DNSNames      []string `json:"dnsNames,omitempty"`
	// Role is the role policy of an organisation-auth (pharmacy, insurer) or operator certificate
	// (operator, ra-officer, auditor).
	Role string `json:"role,omitempty"`
}

// IssueRequest asks the CA to issue a certificate.
type IssueRequest struct {
	Profile string
	CSR     []byte // DER PKCS#10; its signature is checked by the CA
	Subject SubjectIDs
	Actor   string
}

// CertService is the CA's certificate surface (issue 1 and 2).
type CertService interface {
	Issue(ctx context.Context, req IssueRequest) (ca.CertRecord, error)
	Get(ctx context.Context, serial string) (ca.CertRecord, error)
	List(ctx context.Context, f ca.CertFilter) ([]ca.CertRecord, error)
	// Revoke revokes with an RFC 5280 CRLReason (not 6: Hold is separate). changed is false when the certificate
	// was already revoked with that reason.
	Revoke(ctx context.Context, serial string, reason int, actor string) (changed bool, err error)
	Hold(ctx context.Context, serial string, actor string) error
	Release(ctx context.Context, serial string, actor string) error
}

// CRLSource serves the current CRL of each shard. ok is false for a shard that does not exist.
type CRLSource interface {
	CRL(shard int) (der []byte, thisUpdate, nextUpdate time.Time, ok bool)
}

// OCSPResponder answers RFC 6960 requests: Respond takes the DER request of a POST, RespondGET the base64 of
// a GET (RFC 6960 Appendix A.1, already URL-decoded). Both return a DER OCSPResponse; a malformed request
// should come back as a DER malformedRequest response, not an error.
type OCSPResponder interface {
	Respond(ctx context.Context, req []byte) ([]byte, error)
	RespondGET(ctx context.Context, b64 string) ([]byte, error)
}

// OCSPGETHeaders is implemented by an OCSPResponder that knows the HTTP caching headers of its GET answers
// (RFC 5019 §6.2: Cache-Control, Expires, Last-Modified, ETag), nil for an answer that must not be cached.
// The API uses it when present instead of parsing every response to derive them.
type OCSPGETHeaders interface {
	RespondGETHeaders(ctx context.Context, b64 string, now time.Time) ([]byte, map[string]string)
}

// TSA answers RFC 3161 time-stamp queries with a DER TimeStampResp.
type TSA interface {
	Respond(ctx context.Context, req []byte) ([]byte, error)
}

// PrescriptionIngestor takes a signed prescription (HIX-Rx-CAdES, CMS SignedData in DER) on arrival at the
// exchange: validates it, upgrades it to B-LT and returns the sealed validation report (CMS, DER) and the same
// report as JSON.
type PrescriptionIngestor interface {
	Ingest(ctx context.Context, cmsDER []byte, caller Identity) (sealedReport []byte, reportJSON []byte, err error)
}

// Verifier validates one CMS signature and returns the ETSI EN 319 102-1 validation report as JSON.
type Verifier interface {
	Verify(ctx context.Context, cmsDER []byte) (reportJSON []byte, err error)
}

// SealingVerifier is a Verifier that can also return its report sealed by the exchange: a CMS SignedData
// (attached, mime-type application/json) signed with the exchange's organisation seal, the evidence an insurer
// keeps per document. POST /v1/verify/sealed exists when Services.Verifier implements it.
type SealingVerifier interface {
	Verifier
	VerifySealed(ctx context.Context, cmsDER []byte) (sealedReport, reportJSON []byte, err error)
}

// BatchVerifier validates signatures in bulk: each input line is a JSON object with the base64 of one CMS
// signature, each output line the report for it with its input line number, in input order, then a summary
// line. It must stream (never hold the whole batch) and stop when ctx ends. An error after the first byte was
// written ends the response early.
type BatchVerifier interface {
	VerifyNDJSON(ctx context.Context, r io.Reader, w io.Writer, opt BatchOptions) error
}

// BatchOptions are the query parameters of POST /v1/verify/batch.
type BatchOptions struct {
	// FromLine resumes a batch: input lines before it are read but not verified or answered (from_line).
	FromLine int
}

// SignatureUpgrader extends a CAdES signature to level "B-T", "B-LT" or "B-LTA". A signature that does not
// validate is an Invalid() error (422).
type SignatureUpgrader interface {
	Upgrade(ctx context.Context, cmsDER []byte, level string) ([]byte, error)
}

// Token is one HIX adapter token of a facility.
type Token struct {
	ID       string    `json:"id"`
	SIAMID   string    `json:"siamId"`
	Kind     string    `json:"kind"` // "software" or "physical"
	Serial   string    `json:"serial,omitempty"`
	Status   string    `json:"status"`
	NotAfter time.Time `json:"notAfter,omitzero"`
	CertDER  []byte    `json:"certificate,omitempty"`
	// Chain is the issuing chain above the certificate, DER, up to and including the root (answer of
	// POST /v1/enrolment and of renewal only).
	Chain [][]byte `json:"chain,omitempty"`
	// ChainPEM is the certificate and Chain as PEM, leaf first: what `mohr token install` and
	// `mohr adapter run` take (answer of POST /v1/enrolment and of renewal only).
	ChainPEM string `json:"chainPem,omitempty"`
}

// TokenService enrols facilities and manages their adapter tokens (issue 5).
type TokenService interface {
	// CreateEnrolmentCode makes a one-time enrolment code for the facility siamID.
	CreateEnrolmentCode(ctx context.Context, siamID, actor string) (code string, expires time.Time, err error)
	// Enrol redeems a code with a CSR and returns the new token with its certificate. The code is the
	// credential: it must be single-use, short-lived and compared in constant time.
	Enrol(ctx context.Context, code string, csrDER []byte, kind string) (Token, error)
	Tokens(ctx context.Context, siamID string) ([]Token, error)
	// RevokeToken revokes a token's certificate with an RFC 5280 CRLReason (an end-entity reason).
	RevokeToken(ctx context.Context, siamID, tokenID string, reason int, actor string) error
}

// TokenRenewer renews a facility's adapter token: current is the caller's verified client certificate (its
// current token), csrDER the new request. It returns the new chain, leaf first, up to and including the root.
type TokenRenewer interface {
	RenewToken(ctx context.Context, current *x509.Certificate, csrDER []byte) ([]*x509.Certificate, error)
}

// FacilityRecord is one facility of the national facility registry, as imported.
type FacilityRecord struct {
	SIAMID             string    `json:"siamId"`
	Name               string    `json:"name"`
	LicenceNumber      string    `json:"licenceNumber"`
	LicenceIssuer      string    `json:"licenceIssuer,omitempty"`
	LicenceNotAfter    time.Time `json:"licenceNotAfter"`
	LicenceStatus      string    `json:"licenceStatus"`
	SystemCertID       string    `json:"systemCertId,omitempty"`
	SystemCertNotAfter time.Time `json:"systemCertNotAfter,omitzero"`
}

// PhysicianRecord is one physician of the medical council's registry, as imported.
type PhysicianRecord struct {
	NationalCode    string    `json:"nationalCode"`
	CouncilNumber   string    `json:"councilNumber"`
	Name            string    `json:"name"`
	Specialty       string    `json:"specialty,omitempty"`
	Status          string    `json:"status"`
	RegisteredUntil time.Time `json:"registeredUntil"`
	// StatusSince is when Status took effect (optional; default: the import, or the registration's start for
	// a physician's first record). It becomes the effective time of the standing change in the history.
	StatusSince time.Time `json:"statusSince,omitzero"`
}

// ImportResult counts what an import changed.
type ImportResult struct {
	Added     int `json:"added"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
}

// Standing is whether a facility or physician is currently in good standing.
type Standing struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"` // "good", "lapsed", "suspended", "unknown"
	Reasons   []string  `json:"reasons,omitempty"`
	CheckedAt time.Time `json:"checkedAt"`
}

// RegistryService holds the registries the RA checks against (issue 4).
type RegistryService interface {
	ImportFacilities(ctx context.Context, recs []FacilityRecord, actor string) (ImportResult, error)
	ImportPhysicians(ctx context.Context, recs []PhysicianRecord, actor string) (ImportResult, error)
	FacilityStanding(ctx context.Context, siamID string) (Standing, error)
	PhysicianStanding(ctx context.Context, councilNumber string) (Standing, error)
	// PhysicianHistory returns a physician's registration with every standing change and its effective time
	// (a verifier judges a signature by the standing at its best signature time); unknown: a NotFound error.
	PhysicianHistory(ctx context.Context, councilNumber string) (RegistrationHistory, error)
}

// RegistrationHistory is a physician's council registration today and every standing it had, oldest first.
type RegistrationHistory struct {
	CouncilNumber string          `json:"councilNumber"`
	NationalCode  string          `json:"nationalCode"`
	Name          string          `json:"name,omitempty"`
	Specialty     string          `json:"specialty,omitempty"`
	Status        string          `json:"status"`
	ValidFrom     time.Time       `json:"validFrom"`
	ValidUntil    time.Time       `json:"validUntil"`
	History       []StandingEntry `json:"history"`
	CheckedAt     time.Time       `json:"checkedAt"`
}

// StandingEntry is one standing of a registration: in force from EffectiveAt until the next entry's.
type StandingEntry struct {
	EffectiveAt time.Time `json:"effectiveAt"`
	Status      string    `json:"status"`
	ValidFrom   time.Time `json:"validFrom"`
	ValidUntil  time.Time `json:"validUntil"`
	RecordedAt  time.Time `json:"recordedAt"`
}

// AuditVerification is the result of checking the whole audit log.
type AuditVerification struct {
	OK       bool   `json:"ok"`
	Size     int64  `json:"size"`
	RootHash []byte `json:"rootHash"`
	// FirstBad is the index of the first event that does not verify, -1 when OK.
	FirstBad int64 `json:"firstBad"`
}

// AuditService exposes the tamper-evident audit log (internal/audit).
type AuditService interface {
	Verify(ctx context.Context) (AuditVerification, error)
	// LatestCheckpoint returns the newest signed checkpoint in the signed-note format.
	LatestCheckpoint(ctx context.Context) ([]byte, error)
	// ProveInclusion returns the RFC 6962 inclusion proof of leaf index in the tree of size treeSize.
	ProveInclusion(ctx context.Context, index, treeSize int64) ([][]byte, error)
	// ProveConsistency returns the RFC 6962 consistency proof between two tree sizes.
	ProveConsistency(ctx context.Context, oldSize, newSize int64) ([][]byte, error)
}

// CAAdmin performs the gravest operations. api calls them only after two different operators approved; actors
// holds both, the requester first.
type CAAdmin interface {
	RevokeIntermediate(ctx context.Context, reason int, actors [2]string) error
	// RekeyIntermediate makes a new intermediate key and returns the CSR (DER) for the national root.
	RekeyIntermediate(ctx context.Context, actors [2]string) (csrDER []byte, err error)
	DestroyKey(ctx context.Context, keyID string, actors [2]string) error
	SetTrustAnchors(ctx context.Context, roots []*x509.Certificate, actors [2]string) error
}

// Auditor appends events to the audit log. api uses it for dual control.
type Auditor interface {
	AppendAudit(ctx context.Context, ev audit.Event) error
}

// RevocationChecker says whether a client certificate is revoked. api fails closed: an error denies the request.
type RevocationChecker interface {
	Revoked(ctx context.Context, cert *x509.Certificate) (bool, error)
}

// ReadinessChecker reports whether the server can serve (database reachable, keys loaded).
type ReadinessChecker interface {
	Ready(ctx context.Context) error
}

// Services holds the implementations the handlers call. A nil field makes its routes answer 501. Revocation is
// required (New fails without it) unless Config.AllowNoRevocationCheck is set; Auditor is required for the
// dual-control routes to do anything.
type Services struct {
	Certs    CertService
	CRL      CRLSource
	OCSP     OCSPResponder
	TSA      TSA
	Ingestor PrescriptionIngestor
	Verifier Verifier
	Batch    BatchVerifier
	Upgrader SignatureUpgrader
	// Prescriptions reads stored prescriptions (GET /v1/prescriptions/{id}).
	Prescriptions PrescriptionReader
	Tokens        TokenService
	Renewal       TokenRenewer
	Registry      RegistryService
	Audit         AuditService
	CAAdmin       CAAdmin
	Auditor       Auditor
	Revocation    RevocationChecker
	Ready         ReadinessChecker
	// Approvals keeps dual-control approvals (the database, shared by every node); nil keeps them in memory.
	Approvals ApprovalStore
	// Pages, if set, is the people-facing verification page, mounted under web.Prefix (pages.go).
	Pages *web.Handler
	// Offline serves GET /trust-bundle, the signed trust bundle of offline verification.
	Offline TrustBundleSource
	// Revocations serves GET /v1/revocations, the revocation change feed gateways follow.
	Revocations RevocationFeed
	// Remote serves the CSC API v2 routes of remote signing (csc.go).
	Remote RemoteSigning
}

// RevocationChange is one change of a certificate's state at the exchange: issued, revoked, put on hold, or
// released from hold (Status "issued" again). It carries the certificate's state when the feed was read.
type RevocationChange struct {
	// Seq is the position of the change in the exchange's audit log; the feed is ordered by it.
	Seq       int64     `json:"seq"`
	Serial    string    `json:"serial"` // lower-case hex, as the rest of the API
	Status    string    `json:"status"` // "revoked", "hold" or "issued"
	Reason    int       `json:"reason,omitempty"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	NotAfter  time.Time `json:"notAfter"`
}

// RevocationChanges is one page of the revocation change feed. Next is where the following page starts
// (GET /v1/revocations?from=Next); a page with Next beyond the last change is the feed's head.
type RevocationChanges struct {
	Next    int64              `json:"next"`
	Changes []RevocationChange `json:"changes"`
}

// RevocationFeed lists certificate state changes in the order the exchange made them, so that a gateway learns
// of a revocation within its polling interval instead of its OCSP cache lifetime. from < 0 asks for the head only
// (Next set, no changes): where a new follower starts. A non-empty profile lists only certificates of that
// profile (a gateway follows facility-adapter only).
type RevocationFeed interface {
	RevocationChanges(ctx context.Context, from int64, profile string) (RevocationChanges, error)
}
