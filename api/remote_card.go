package api

// The RA desk's national ID card routes for remote signing (docs/remote-signing.md, "The national ID card as
// an activation factor"): the exchange issues a one-use challenge bound to the RA officer who asks, the
// physician's card signs it at the desk (after its PIN, on the card), and the exchange checks the answer
// itself (chain to its configured national ID card issuers, validity, the signature over its own challenge,
// the national code): to register the card as a credential's activation factor, or as the identity check
// of an enrolment.

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mohr-hix/mohr/signing/remote"
)

// RemoteCardRA is what the card routes need of the remote signing service (*remote.Service has it).
type RemoteCardRA interface {
	BeginCardChallenge(ctx context.Context, c remote.Caller, purpose remote.CardPurpose, credID string) (remote.CardChallenge, error)
	RegisterCard(ctx context.Context, c remote.Caller, credID, challengeID string, ans remote.CardAnswer) (remote.Card, error)
	Factors(ctx context.Context, c remote.Caller, credID string) ([][]byte, []remote.Card, error)
}

type remoteCardChallengeRequest struct {
	// Purpose is "enrol" (the identity check of POST /v1/remote/credentials) or "register" (a card for an
	// existing credential, credentialId).
	Purpose      string `json:"purpose"`
	CredentialID string `json:"credentialId,omitempty"`
}

type remoteCardChallengeResponse struct {
	ID      string `json:"id"`
	Purpose string `json:"purpose"`
	// Challenge is what the card signs with INTERNAL AUTHENTICATE (base64).
	Challenge string    `json:"challenge"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// remoteCardAnswer is a card's answer to a challenge the exchange issued.
type remoteCardAnswer struct {
	ChallengeID string `json:"challengeId"`
	// Certificate is the card's authentication certificate, base64 DER.
	Certificate string `json:"certificate"`
	// Signature is the card's INTERNAL AUTHENTICATE answer: base64 plain ECDSA r||s (64 bytes).
	Signature string `json:"signature"`
}

// answer decodes a into the service's form; false if it is malformed.
func (a remoteCardAnswer) answer() (remote.CardAnswer, bool) {
	cert, ok1 := decodeB64(a.Certificate)
	sig, ok2 := decodeB64(a.Signature)
	if !ok1 || !ok2 || a.ChallengeID == "" || len(cert) == 0 || len(cert) > maxCardCertificate || len(sig) != 64 {
		return remote.CardAnswer{}, false
	}
	return remote.CardAnswer{Certificate: cert, Signature: sig}, true
}

func init() {
	bodyTypes["remoteCardChallenge"] = [2]any{remoteCardChallengeRequest{}, remoteCardChallengeResponse{}}
	bodyTypes["remoteAddCard"] = [2]any{remoteCardAnswer{}, factorView{}}
	needs := func(s *Services) bool { _, ok := s.Remote.(RemoteCardRA); return ok }
	routes = append(routes,
		&route{method: "POST", pattern: "/v1/remote/card-challenges", op: "remoteCardChallenge", auditDenied: true, tag: "remote",
			summary: "A one-use challenge for the physician's national ID card to sign at the RA desk (enrolment or card registration; RA officer)",
			roles:   roles(RoleRAOfficer), body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 201, needs: needs,
			handle: (*Server).handleRemoteCardChallenge},
		&route{method: "POST", pattern: "/v1/remote/credentials/{credentialID}/cards", op: "remoteAddCard", auditDenied: true, tag: "remote",
			summary: "Register the physician's national ID card as an activation factor of a remote credential (RA officer, in person)",
			roles:   roles(RoleRAOfficer), body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 201, needs: needs,
			handle: (*Server).handleRemoteAddCard},
	)
}

func (s *Server) remoteCardRA() RemoteCardRA { ra, _ := s.svc.Remote.(RemoteCardRA); return ra }

// remoteCardFail maps the card errors, then the other remote errors.
func (s *Server) remoteCardFail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, remote.ErrCardRefused), errors.Is(err, remote.ErrUsed), errors.Is(err, remote.ErrExpired):
		s.problem(w, probForbidden, "the national ID card's answer was refused (the challenge, the card's certificate or its signature)")
	default:
		s.remoteFail(w, r, err)
	}
}

func (s *Server) handleRemoteCardChallenge(w http.ResponseWriter, r *http.Request) {
	var req remoteCardChallengeRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ch, err := s.remoteCardRA().BeginCardChallenge(r.Context(), cscCaller(r), remote.CardPurpose(req.Purpose), req.CredentialID)
	if err != nil {
		s.remoteCardFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, remoteCardChallengeResponse{ID: ch.ID, Purpose: string(ch.Purpose),
		Challenge: base64.StdEncoding.EncodeToString(ch.Challenge), ExpiresAt: ch.ExpiresAt.UTC()})
}

func (s *Server) handleRemoteAddCard(w http.ResponseWriter, r *http.Request) {
	var req remoteCardAnswer
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ans, ok := req.answer()
	if !ok {
		s.problem(w, probInvalid, "challengeId, certificate (base64 DER) and signature (base64, 64 bytes r||s) are required")
		return
	}
	k, err := s.remoteCardRA().RegisterCard(r.Context(), cscCaller(r), chi.URLParam(r, "credentialID"), req.ChallengeID, ans)
	if err != nil {
		s.remoteCardFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, cardView(k))
}
