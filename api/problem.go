package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/ids"
	"github.com/mohr-hix/mohr/tokens"
)

// ProblemContentType is the media type of RFC 9457 problem documents.
const ProblemContentType = "application/problem+json"

// problemTypeBase prefixes the type URI of every problem Mohr defines (RFC 9457 §3.1.1). The URIs are
// identifiers, documented in docs/api.md; they need not resolve.
const problemTypeBase = "urn:mohr:problem:"

// Problem is an RFC 9457 problem document. ID is an extension member: an opaque identifier of a server-side
// failure that the access log records, so an operator can find the cause without the client seeing it.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	ID       string `json:"id,omitempty"`
	// ApprovalID names the pending approval a dual-control problem is about.
	ApprovalID string `json:"approvalId,omitempty"`
}

// Problem kinds. Each is a type URI suffix with a fixed title and status.
type problemKind struct {
	slug   string
	title  string
	status int
}

var (
	probMalformed       = problemKind{"malformed", "The request is malformed", http.StatusBadRequest}
	probInvalid         = problemKind{"invalid", "The request is not valid", http.StatusUnprocessableEntity}
	probUnauthenticated = problemKind{"unauthenticated", "Authentication required", http.StatusUnauthorized}
	probBadCredential   = problemKind{"bad-credential", "The credential was not accepted", http.StatusUnauthorized}
	probForbidden       = problemKind{"forbidden", "Not allowed", http.StatusForbidden}
	probNotFound        = problemKind{"not-found", "Not found", http.StatusNotFound}
	probMethod          = problemKind{"method-not-allowed", "Method not allowed", http.StatusMethodNotAllowed}
	probConflict        = problemKind{"conflict", "The request conflicts with the current state", http.StatusConflict}
	probGone            = problemKind{"gone", "No longer available", http.StatusGone}
	probTooLarge        = problemKind{"too-large", "The request body is too large", http.StatusRequestEntityTooLarge}
	probMediaType       = problemKind{"unsupported-media-type", "Unsupported media type", http.StatusUnsupportedMediaType}
	probRateLimited     = problemKind{"rate-limited", "Too many requests", http.StatusTooManyRequests}
	probInternal        = problemKind{"internal", "Internal server error", http.StatusInternalServerError}
	probNotImplemented  = problemKind{"not-implemented", "Not implemented in this deployment", http.StatusNotImplemented}
	probUnavailable     = problemKind{"unavailable", "Service unavailable", http.StatusServiceUnavailable}
	probTimeout         = problemKind{"timeout", "The request took too long", http.StatusServiceUnavailable}
	probApprovalPending = problemKind{"approval-required", "A second operator must approve", http.StatusAccepted}

	// Enrolment refusals. "Not accepted" covers an unknown, malformed or wrong code alike, so an
	// unauthenticated caller learns nothing about which codes exist; "used" and "expired" are told only to a
	// caller who presented the code's secret (tokens checks the secret first).
	probCodeNotAccepted = problemKind{"enrolment-code-not-accepted", "The enrolment code was not accepted", http.StatusForbidden}
	probCodeUsed        = problemKind{"enrolment-code-used", "The enrolment code has already been used", http.StatusConflict}
	probCodeExpired     = problemKind{"enrolment-code-expired", "The enrolment code has expired", http.StatusGone}
	probWrongFacility   = problemKind{"csr-wrong-facility", "The certificate request is for another facility", http.StatusUnprocessableEntity}
	probNotEligible     = problemKind{"not-eligible", "Not eligible for this certificate", http.StatusForbidden}
)

// requestError is an error api itself detected in a request. Its detail is written by api, never copied from
// a lower layer, so it is safe to show the client.
type requestError struct {
	kind   problemKind
	detail string
}

func (e *requestError) Error() string { return "api: " + e.kind.slug + ": " + e.detail }

func malformed(detail string) error { return &requestError{probMalformed, detail} }
func invalid(detail string) error   { return &requestError{probInvalid, detail} }

// Behaviours a service's error may have, so packages below api can classify errors without knowing HTTP. api
// checks them with errors.As; implement the ones that apply and return true.
type (
	notFoundError interface{ NotFound() bool }
	conflictError interface{ Conflict() bool }
	invalidError  interface{ Invalid() bool }
	deniedError   interface{ Denied() bool }
	// unavailableError: a dependency (TSA, revocation source) could not answer now; 503 with Retry-After.
	unavailableError interface{ Unavailable() bool }
)

// classify maps an error to a problem kind. known is false for errors api does not recognise; those answer a
// generic 500 with an opaque id.
func classify(err error) (k problemKind, detail string, known bool) {
	var re *requestError
	if errors.As(err, &re) {
		return re.kind, re.detail, true
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return probTooLarge, "", true
	case errors.Is(err, ca.ErrNotFound):
		return probNotFound, "", true
	case errors.Is(err, ca.ErrConflict):
		return probConflict, "", true
	case errors.Is(err, ca.ErrCSRSignature): // checked by the CA, not again by the handler
		return probInvalid, "csr signature does not verify", true
	case errors.Is(err, ca.ErrDuplicateSerial):
		return probConflict, "serial already in use", true
	case errors.Is(err, ids.ErrNationalCodeFormat), errors.Is(err, ids.ErrNationalCodeChecksum),
		errors.Is(err, ids.ErrNationalCodeRepeated):
		return probInvalid, "national code is not valid", true
	case errors.Is(err, ids.ErrCouncilNumber):
		return probInvalid, "medical-council number is not valid", true
	case errors.Is(err, ids.ErrSIAMID):
		return probInvalid, "SIAM ID is not valid", true
	case errors.Is(err, ids.ErrLicenceNumber):
		return probInvalid, "licence number is not valid", true
	case errors.Is(err, hixext.ErrNotPresent):
		return probInvalid, "a required certificate extension is missing", true
	case errors.Is(err, context.DeadlineExceeded):
		return probTimeout, "", true
	case errors.Is(err, tokens.ErrCodeUnknown):
		return probCodeNotAccepted, "check that the code is typed exactly as the RA handed it over (HIX-XXXXXXXX-...), or ask the RA for a new one", true
	case errors.Is(err, tokens.ErrCodeUsed):
		return probCodeUsed, "each code enrols one token; ask the RA for a new code", true
	case errors.Is(err, tokens.ErrCodeExpired):
		return probCodeExpired, "ask the RA for a new code", true
	case errors.Is(err, tokens.ErrWrongSIAM):
		return probWrongFacility, "the request's subject serialNumber must be the SIAM ID the code was issued for: make the request again with mohr token keygen --siam <that SIAM ID>", true
	}
	var ne *tokens.NotEligibleError
	if errors.As(err, &ne) {
		return probNotEligible, "registry standing: " + string(ne.Reason) + "; the registry must show an active licence and system certificate before a certificate can be issued", true
	}
	var nf notFoundError
	if errors.As(err, &nf) && nf.NotFound() {
		return probNotFound, "", true
	}
	var cf conflictError
	if errors.As(err, &cf) && cf.Conflict() {
		return probConflict, "", true
	}
	var iv invalidError
	if errors.As(err, &iv) && iv.Invalid() {
		return probInvalid, "", true
	}
	var dn deniedError
	if errors.As(err, &dn) && dn.Denied() {
		return probForbidden, "", true
	}
	var ua unavailableError
	if errors.As(err, &ua) && ua.Unavailable() {
		return probUnavailable, "", true
	}
	return probInternal, "", false
}

// writeProblem writes p as application/problem+json.
func writeProblem(w http.ResponseWriter, p Problem) {
	h := w.Header()
	h.Set("Content-Type", ProblemContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func newProblem(k problemKind, detail string) Problem {
	return Problem{Type: problemTypeBase + k.slug, Title: k.title, Status: k.status, Detail: detail}
}

// fail answers err as a problem document. Unknown errors get an opaque id, which the access logger records with
// the error text; the client sees only the id.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody reads the answer.
		s.noteError(r, err, "")
		return
	}
	k, detail, known := classify(err)
	p := newProblem(k, detail)
	if !known {
		p.ID = opaqueID()
	}
	s.noteError(r, err, p.ID)
	if k.status == http.StatusTooManyRequests || k == probUnavailable || k == probTimeout {
		w.Header().Set("Retry-After", "5")
	}
	writeProblem(w, p)
}

// problem answers a problem of kind k with a detail api wrote.
func (s *Server) problem(w http.ResponseWriter, k problemKind, detail string) {
	writeProblem(w, newProblem(k, detail))
}

func opaqueID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
