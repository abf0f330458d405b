package api

import (
	"crypto/x509"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/mohr-hix/mohr/ca"
)

// issueBody is the JSON body of POST /v1/certificates.
type issueBody struct {
	Profile string     `json:"profile"`
	CSR     []byte     `json:"csr"` // base64 (standard encoding) of the DER PKCS#10 request
	Subject SubjectIDs `json:"subject"`
}

func (b *issueBody) validate() error {
	if !reProfile.MatchString(b.Profile) {
		return invalid("profile must be a lower-case profile name")
	}
	// The CSR's self-signature is checked once, by the CA (ca.ParseCSR) for an issuance at once, by
	// handleIssue before an issuance under dual control is stored; here only its structure.
	if len(b.CSR) == 0 {
		return invalid("csr is required")
	}
	if _, err := x509.ParseCertificateRequest(b.CSR); err != nil {
		return invalid("csr is not a DER PKCS#10 request")
	}
	return b.Subject.validate()
}

// revokeBody is the JSON body of POST /v1/certificates/{serial}/revoke.
type revokeBody struct {
	Reason *int `json:"reason"` // RFC 5280 §5.3.1 CRLReason
}

// endEntityReasons are the CRLReasons an end-entity certificate may be revoked with here. certificateHold (6)
// has its own route; removeFromCRL (8) is the release route; cACompromise and aACompromise do not apply.
var endEntityReasons = map[int]bool{0: true, 1: true, 3: true, 4: true, 5: true, 9: true}

func (b *revokeBody) validate() error {
	if b.Reason == nil {
		return invalid("reason is required")
	}
	if !endEntityReasons[*b.Reason] {
		return invalid("reason must be one of 0, 1, 3, 4, 5, 9 (RFC 5280 CRLReason)")
	}
	return nil
}

// certView is a certificate record as the API shows it.
type certView struct {
	Serial           string    `json:"serial"`
	Profile          string    `json:"profile"`
	Subject          string    `json:"subject"`
	BoundTo          string    `json:"boundTo,omitempty"`
	NotBefore        time.Time `json:"notBefore"`
	NotAfter         time.Time `json:"notAfter"`
	Status           string    `json:"status"`
	Shard            int       `json:"shard"`
	RevokedAt        time.Time `json:"revokedAt,omitzero"`
	RevocationReason *int      `json:"revocationReason,omitempty"`
	Certificate      []byte    `json:"certificate,omitempty"`
}

func viewCert(rec ca.CertRecord) certView {
	v := certView{Serial: rec.Serial, Profile: rec.Profile, Subject: rec.Subject, BoundTo: rec.Subject2,
		NotBefore: rec.NotBefore, NotAfter: rec.NotAfter, Status: string(rec.Status), Shard: rec.Shard,
		Certificate: rec.DER}
	if rec.Status == ca.StatusRevoked || rec.Status == ca.StatusHeld {
		reason := rec.RevocationReason
		v.RevokedAt, v.RevocationReason = rec.RevokedAt, &reason
	}
	return v
}

func serialParam(r *http.Request) (string, error) {
	s := strings.ToLower(chi.URLParam(r, "serial"))
	if !reSerial.MatchString(s) {
		return "", malformed("serial must be 1 to 40 hex digits")
	}
	return s, nil
}

func actor(r *http.Request) string {
	id, _ := IdentityFrom(r.Context())
	return id.Actor()
}

func (s *Server) handleListCerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := ca.CertFilter{Profile: q.Get("profile"), Status: ca.Status(q.Get("status")), Subject2: q.Get("subject"), After: strings.ToLower(q.Get("after"))}
	if f.Profile != "" && !reProfile.MatchString(f.Profile) {
		s.fail(w, r, malformed("profile is not a profile name"))
		return
	}
	switch f.Status {
	case "", ca.StatusPending, ca.StatusIssued, ca.StatusFailed, ca.StatusRevoked, ca.StatusHeld:
	default:
		s.fail(w, r, malformed("status is not a certificate status"))
		return
	}
	if f.After != "" && !reSerial.MatchString(f.After) {
		s.fail(w, r, malformed("after must be a serial"))
		return
	}
	if len(f.Subject2) > 128 {
		s.fail(w, r, malformed("subject is too long"))
		return
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			s.fail(w, r, malformed("limit must be 1 to 1000"))
			return
		}
		f.Limit = n
	}
	recs, err := s.svc.Certs.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]certView, 0, len(recs))
	for _, rec := range recs {
		v := viewCert(rec)
		v.Certificate = nil // listings stay small; GET one certificate for its DER
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"certificates": out})
}

func (s *Server) handleGetCert(w http.ResponseWriter, r *http.Request) {
	serial, err := serialParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rec, err := s.svc.Certs.Get(r.Context(), serial)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewCert(rec))
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	serial, err := serialParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var b revokeBody
	if err := decodeJSON(r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := b.validate(); err != nil {
		s.fail(w, r, err)
		return
	}
	changed, err := s.svc.Certs.Revoke(r.Context(), serial, *b.Reason, actor(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"serial": serial, "status": "revoked", "changed": changed})
}

func (s *Server) handleHold(w http.ResponseWriter, r *http.Request) {
	serial, err := serialParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.svc.Certs.Hold(r.Context(), serial, actor(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"serial": serial, "status": string(ca.StatusHeld)})
}

func (s *Server) handleRelease(w http.ResponseWriter, r *http.Request) {
	serial, err := serialParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.svc.Certs.Release(r.Context(), serial, actor(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"serial": serial, "status": string(ca.StatusIssued)})
}
