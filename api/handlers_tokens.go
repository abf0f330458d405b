package api

import (
	"bytes"
	"encoding/pem"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/mohr-hix/mohr/internal/ids"
	"github.com/mohr-hix/mohr/tokens"
)

// enrolmentCodeBody is the JSON body of POST /v1/enrolment-codes.
type enrolmentCodeBody struct {
	SIAMID string `json:"siamId"`
}

// enrolBody is the JSON body of POST /v1/enrolment.
type enrolBody struct {
	Code string `json:"code"`
	CSR  []byte `json:"csr"`  // base64 of the DER PKCS#10 request
	Kind string `json:"kind"` // "software" or "physical"
}

func (b *enrolBody) validate() error {
	if !reCode.MatchString(b.Code) {
		// Answered like any other code that is not accepted, so a malformed code teaches nothing.
		return tokens.ErrCodeUnknown
	}
	if b.Kind != "software" && b.Kind != "physical" {
		return invalid(`kind must be "software" or "physical"`)
	}
	_, err := parseCSR(b.CSR)
	return err
}

func (s *Server) handleEnrolmentCode(w http.ResponseWriter, r *http.Request) {
	var b enrolmentCodeBody
	if err := decodeJSON(r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	siam, err := ids.SIAMID(b.SIAMID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	code, exp, err := s.svc.Tokens.CreateEnrolmentCode(r.Context(), siam, actor(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		SIAMID    string    `json:"siamId"`
		Code      string    `json:"code"`
		ExpiresAt time.Time `json:"expiresAt"`
	}{siam, code, exp})
}

func (s *Server) handleEnrol(w http.ResponseWriter, r *http.Request) {
	var b enrolBody
	if err := decodeJSON(r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := b.validate(); err != nil {
		s.fail(w, r, err)
		return
	}
	tok, err := s.svc.Tokens.Enrol(r.Context(), b.Code, b.CSR, b.Kind)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, tok)
}

func siamParam(r *http.Request) (string, error) {
	v, err := ids.SIAMID(chi.URLParam(r, "siamID"))
	if err != nil {
		return "", malformed("siamID is not a SIAM ID")
	}
	return v, nil
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	siam, err := siamParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	toks, err := s.svc.Tokens.Tokens(r.Context(), siam)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if toks == nil {
		toks = []Token{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": toks})
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	siam, err := siamParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	tokenID := chi.URLParam(r, "tokenID")
	if !reTokenID.MatchString(tokenID) {
		s.fail(w, r, malformed("tokenID is not a token id"))
		return
	}
	reason, err := tokenRevokeReason(r.URL.Query().Get("reason"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.svc.Tokens.RevokeToken(r.Context(), siam, tokenID, reason, actor(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"siamId": siam, "id": tokenID, "status": "revoked", "reason": reason})
}

func (s *Server) handleRenewal(w http.ResponseWriter, r *http.Request) {
	id, _ := IdentityFrom(r.Context())
	if id.Cert == nil {
		s.fail(w, r, &requestError{probUnauthenticated, "renewal is authenticated by the adapter's current token"})
		return
	}
	body, err := readAll(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := parseCSR(body); err != nil {
		s.fail(w, r, err)
		return
	}
	chain, err := s.svc.Renewal.RenewToken(r.Context(), id.Cert, body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var buf bytes.Buffer
	for _, c := range chain {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	w.Header().Set("Content-Type", ctPEMChain)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// reasonNames are the RFC 5280 §5.3.1 names of endEntityReasons, as a facility gives them when it revokes its
// own token (keyCompromise for a lost or stolen one).
var reasonNames = map[string]int{"unspecified": 0, "keyCompromise": 1, "affiliationChanged": 3, "superseded": 4,
	"cessationOfOperation": 5, "privilegeWithdrawn": 9}

// tokenRevokeReason reads the reason query parameter of a token revocation: an RFC 5280 name or code of an
// end-entity reason; absent, cessationOfOperation (the facility stops using the token).
func tokenRevokeReason(q string) (int, error) {
	if q == "" {
		return reasonNames["cessationOfOperation"], nil
	}
	for name, code := range reasonNames {
		if strings.EqualFold(q, name) || q == strconv.Itoa(code) {
			return code, nil
		}
	}
	return 0, malformed("reason must be one of keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, unspecified (or its RFC 5280 code)")
}
