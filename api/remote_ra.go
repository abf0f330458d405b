package api

// This file is the RA desk's and the operators' side of remote signing (docs/remote-signing.md): enrolment
// of a physician's remote credential (the RA officer, in person, after the national ID card check that
// `mohr remote enrol` performs), a new passkey registration code (re-enrolment after a lost authenticator),
// and the lifecycle (suspend, resume, block, revoke, re-key). The physician's own side is the CSC API
// (csc.go) and the registration and activation pages (api/web/remotepage).
//
// Least privilege: only an RA officer enrols, hands out registration codes and re-keys (each issues or
// binds something to a person, which is the RA's in-person job); an RA officer or an operator may suspend,
// resume, block and revoke (stopping a key is never the wrong side to err on, and operators handle
// incidents); auditors read. Every refused role is audited (auditDenied), as on the CSC routes.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mohr-hix/mohr/signing/remote"
)

// RemoteRA is what the RA and lifecycle routes need of the remote signing service (*remote.Service has it).
// They are offered when Services.Remote also implements it.
type RemoteRA interface {
	Enrol(ctx context.Context, c remote.Caller, r remote.EnrolRequest) (remote.Credential, remote.Registration, error)
	BeginPasskeyRegistration(ctx context.Context, c remote.Caller, credID string) (remote.Registration, error)
	Lookup(ctx context.Context, c remote.Caller, credID string) (remote.Credential, error)
	CredentialsOfCouncil(ctx context.Context, c remote.Caller, councilNumber string) ([]remote.Credential, error)
	Suspend(ctx context.Context, c remote.Caller, credID, reason string) error
	Resume(ctx context.Context, c remote.Caller, credID string) error
	Block(ctx context.Context, c remote.Caller, credID, reason string) error
	Revoke(ctx context.Context, c remote.Caller, credID string, reason int) error
	Rekey(ctx context.Context, c remote.Caller, credID string) (remote.Credential, error)
}

// RemoteRegistrationPage is the path of the passkey registration page the registration code is entered on
// (package api/web/remotepage); the enrolment answer names it.
const RemoteRegistrationPage = "/remote/register"

// remoteCredentialJSON is a remote credential as the RA routes show it (never a key handle or PIN).
type remoteCredentialJSON struct {
	ID            string    `json:"id"`
	CouncilNumber string    `json:"councilNumber"`
	NationalCode  string    `json:"nationalCode"`
	Name          string    `json:"name"`
	Status        string    `json:"status"`
	Reason        string    `json:"reason,omitempty"`
	KeyLabel      string    `json:"keyLabel"`
	KeyDestroyed  bool      `json:"keyDestroyed"`
	Serial        string    `json:"serial,omitempty"`
	NotAfter      time.Time `json:"notAfter,omitzero"`
	Policy        string    `json:"policy,omitempty"`
	KeyURI        string    `json:"keyURI"`
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
	// Factors are the registered activation factors (passkeys, national ID cards; remote_card.go).
	Factors []factorView `json:"factors,omitempty"`
}

type remoteRegistrationJSON struct {
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expiresAt"`
	Page      string    `json:"page"`
}

type remoteEnrolRequest struct {
	NationalCode  string `json:"nationalCode"`
	CouncilNumber string `json:"councilNumber"`
	Name          string `json:"name"`
	// IdentityCheck is how the physician's identity was established in person: for `mohr remote enrol`, the
	// national ID card's INTERNAL AUTHENTICATE (card certificate, challenge, answer). Stored in the audit
	// event as given.
	IdentityCheck json.RawMessage `json:"identityCheck,omitempty"`
	// Card is the physician's national ID card's answer to an enrolment challenge this RA officer got from
	// POST /v1/remote/card-challenges ({"purpose":"enrol"}); the exchange verifies it itself (remote_card.go).
	// Required when the exchange is configured with national ID card issuers.
	Card *remoteCardAnswer `json:"card,omitempty"`
	// RegisterCard also registers the card as the credential's activation factor.
	RegisterCard bool `json:"registerCard,omitempty"`
}

type remoteEnrolResponse struct {
	Credential   remoteCredentialJSON   `json:"credential"`
	Registration remoteRegistrationJSON `json:"registration"`
}

type remoteReasonRequest struct {
	Reason string `json:"reason,omitempty"`
}

type remoteRevokeRequest struct {
	Reason *int `json:"reason"`
}

func init() {
	bodyTypes["remoteEnrol"] = [2]any{remoteEnrolRequest{}, remoteEnrolResponse{}}
	bodyTypes["remoteListCredentials"] = [2]any{nil, struct {
		Credentials []remoteCredentialJSON `json:"credentials"`
	}{}}
	bodyTypes["remoteGetCredential"] = [2]any{nil, remoteCredentialJSON{}}
	bodyTypes["remoteRegistration"] = [2]any{nil, remoteRegistrationJSON{}}
	bodyTypes["remoteSuspend"] = [2]any{remoteReasonRequest{}, remoteCredentialJSON{}}
	bodyTypes["remoteResume"] = [2]any{nil, remoteCredentialJSON{}}
	bodyTypes["remoteBlock"] = [2]any{remoteReasonRequest{}, remoteCredentialJSON{}}
	bodyTypes["remoteRevoke"] = [2]any{remoteRevokeRequest{}, remoteCredentialJSON{}}
	bodyTypes["remoteRekey"] = [2]any{nil, remoteCredentialJSON{}}
	needs := func(s *Services) bool { _, ok := s.Remote.(RemoteRA); return ok }
	ra := func() map[Role]access { return roles(RoleRAOfficer) }
	staff := func() map[Role]access { return roles(caStaff...) }
	const p = "/v1/remote/credentials/{credentialID}"
	routes = append(routes,
		&route{method: "POST", pattern: "/v1/remote/credentials", op: "remoteEnrol", auditDenied: true, tag: "remote",
			summary: "Enrol a physician for remote signing (RA officer, in person, after the national ID card check): key in the HSM, certificate, registration code",
			roles:   ra(), body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 201, needs: needs, handle: (*Server).handleRemoteEnrol},
		&route{method: "GET", pattern: "/v1/remote/credentials", op: "remoteListCredentials", auditDenied: true, tag: "remote",
			summary: "A physician's remote signing credentials", roles: roles(caReaders...), respType: ctJSON, okStatus: 200,
			query: []queryParam{{name: "councilNumber", desc: "the physician's medical-council number", required: true}},
			needs: needs, handle: (*Server).handleRemoteList},
		&route{method: "GET", pattern: p, op: "remoteGetCredential", auditDenied: true, tag: "remote",
			summary: "One remote signing credential", roles: roles(caReaders...), respType: ctJSON, okStatus: 200, needs: needs,
			handle: (*Server).handleRemoteGet},
		&route{method: "POST", pattern: p + "/registration", op: "remoteRegistration", auditDenied: true, tag: "remote",
			summary: "A new passkey registration code for a pending or blocked credential (RA officer, in person)",
			roles:   ra(), respType: ctJSON, okStatus: 201, needs: needs, handle: (*Server).handleRemoteRegistration},
		&route{method: "POST", pattern: p + "/suspend", op: "remoteSuspend", auditDenied: true, tag: "remote",
			summary: "Suspend a remote signing credential", roles: staff(), body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON,
			okStatus: 200, needs: needs, handle: (*Server).handleRemoteSuspend},
		&route{method: "POST", pattern: p + "/resume", op: "remoteResume", auditDenied: true, tag: "remote",
			summary: "Resume a suspended remote signing credential", roles: staff(), respType: ctJSON, okStatus: 200, needs: needs,
			handle: (*Server).handleRemoteResume},
		&route{method: "POST", pattern: p + "/block", op: "remoteBlock", auditDenied: true, tag: "remote",
			summary: "Block a remote signing credential (lost authenticator): its passkeys are removed", roles: staff(), body: jsonBody,
			reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 200, needs: needs, handle: (*Server).handleRemoteBlock},
		&route{method: "POST", pattern: p + "/revoke", op: "remoteRevoke", auditDenied: true, tag: "remote",
			summary: "Revoke a remote signing credential's certificate (the key is destroyed for reasons 1, 3, 4, 5)", roles: staff(),
			body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 200, needs: needs, handle: (*Server).handleRemoteRevoke},
		&route{method: "POST", pattern: p + "/rekey", op: "remoteRekey", auditDenied: true, tag: "remote",
			summary: "Re-key a remote signing credential: new key and certificate, passkeys carried over, the old key destroyed (RA officer)",
			roles:   ra(), respType: ctJSON, okStatus: 201, needs: needs, handle: (*Server).handleRemoteRekey},
	)
}

func (s *Server) remoteRA() RemoteRA { ra, _ := s.svc.Remote.(RemoteRA); return ra }

func remoteCredentialView(c remote.Credential) remoteCredentialJSON {
	v := remoteCredentialJSON{ID: c.ID, CouncilNumber: c.CouncilNumber, NationalCode: c.NationalCode, Name: c.Name,
		Status: string(c.Status), Reason: c.Reason, KeyLabel: c.KeyLabel, KeyDestroyed: c.KeyDestroyed, KeyURI: redactPIN(c.KeyURI),
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
	if chain, err := c.Certificates(); err == nil && len(chain) > 0 {
		v.Serial = chain[0].SerialNumber.Text(16)
		v.NotAfter = chain[0].NotAfter.UTC()
		if remote.HasRemotePolicy(chain[0]) {
			v.Policy = "2.999.1742.6.1"
		}
	}
	return v
}

// redactPIN drops a pin-value attribute from a key URI (the configured token URIs use pin-source, but a URI
// is never echoed with a PIN in it).
func redactPIN(uri string) string {
	path, query, ok := strings.Cut(uri, "?")
	if !ok {
		return uri
	}
	var keep []string
	for _, a := range strings.Split(query, "&") {
		if !strings.HasPrefix(strings.ToLower(a), "pin-value=") {
			keep = append(keep, a)
		}
	}
	if len(keep) == 0 {
		return path
	}
	return path + "?" + strings.Join(keep, "&")
}

// remoteFail maps a remote error to a problem document; HSM, CA and SQL detail never reach the client.
func (s *Server) remoteFail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, remote.ErrForbidden):
		s.problem(w, probForbidden, "")
	case errors.Is(err, remote.ErrNotFound):
		s.problem(w, probNotFound, "no such remote credential")
	case errors.Is(err, remote.ErrRegistry):
		s.problem(w, probNotEligible, "the medical council's registry does not list this council number for this national code in good standing")
	case errors.Is(err, remote.ErrBadRequest):
		s.problem(w, probInvalid, strings.TrimPrefix(err.Error(), remote.ErrBadRequest.Error()+": "))
	case errors.Is(err, remote.ErrCredentialStatus):
		s.problem(w, probConflict, "the credential's status does not allow this")
	default:
		s.fail(w, r, err)
	}
}

func (s *Server) handleRemoteEnrol(w http.ResponseWriter, r *http.Request) {
	var req remoteEnrolRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	check := strings.TrimSpace(string(req.IdentityCheck))
	if check == "null" || check == `""` || check == "{}" {
		check = ""
	}
	var card *remote.EnrolCard
	if req.Card != nil {
		ans, ok := req.Card.answer()
		if !ok {
			s.problem(w, probInvalid, "card: challengeId, certificate (base64 DER) and signature (base64, 64 bytes r||s) are required")
			return
		}
		card = &remote.EnrolCard{ChallengeID: req.Card.ChallengeID, Answer: ans, Register: req.RegisterCard}
	} else if check == "" {
		s.problem(w, probInvalid, "identityCheck or card is required: how the physician's identity was checked in person")
		return
	}
	cred, reg, err := s.remoteRA().Enrol(r.Context(), cscCaller(r), remote.EnrolRequest{NationalCode: req.NationalCode,
		CouncilNumber: req.CouncilNumber, Name: req.Name, IdentityCheck: check, Card: card})
	if err != nil {
		s.remoteCardFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, remoteEnrolResponse{Credential: remoteCredentialView(cred),
		Registration: remoteRegistrationJSON{Code: reg.Code, ExpiresAt: reg.ExpiresAt.UTC(), Page: RemoteRegistrationPage}})
}

func (s *Server) handleRemoteList(w http.ResponseWriter, r *http.Request) {
	council := r.URL.Query().Get("councilNumber")
	if council == "" {
		s.problem(w, probInvalid, "councilNumber is required")
		return
	}
	creds, err := s.remoteRA().CredentialsOfCouncil(r.Context(), cscCaller(r), council)
	if err != nil {
		s.remoteFail(w, r, err)
		return
	}
	out := make([]remoteCredentialJSON, len(creds))
	for i, c := range creds {
		out[i] = remoteCredentialView(c)
	}
	writeJSON(w, http.StatusOK, map[string]any{"credentials": out})
}

// remoteAfter answers with the credential as it is after a lifecycle change.
func (s *Server) remoteAfter(w http.ResponseWriter, r *http.Request, status int, id string, err error) {
	if err != nil {
		s.remoteFail(w, r, err)
		return
	}
	c, err := s.remoteRA().Lookup(r.Context(), cscCaller(r), id)
	if err != nil {
		s.remoteFail(w, r, err)
		return
	}
	v := remoteCredentialView(c)
	if ra := s.remoteCardRA(); ra != nil {
		pks, cards, err := ra.Factors(r.Context(), cscCaller(r), id)
		if err != nil {
			s.remoteFail(w, r, err)
			return
		}
		v.Factors = factorsView(pks, cards)
	}
	writeJSON(w, status, v)
}

func (s *Server) handleRemoteGet(w http.ResponseWriter, r *http.Request) {
	s.remoteAfter(w, r, http.StatusOK, chi.URLParam(r, "credentialID"), nil)
}

func (s *Server) handleRemoteRegistration(w http.ResponseWriter, r *http.Request) {
	reg, err := s.remoteRA().BeginPasskeyRegistration(r.Context(), cscCaller(r), chi.URLParam(r, "credentialID"))
	if err != nil {
		s.remoteFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, remoteRegistrationJSON{Code: reg.Code, ExpiresAt: reg.ExpiresAt.UTC(), Page: RemoteRegistrationPage})
}

func (s *Server) handleRemoteSuspend(w http.ResponseWriter, r *http.Request) {
	var req remoteReasonRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	id := chi.URLParam(r, "credentialID")
	s.remoteAfter(w, r, http.StatusOK, id, s.remoteRA().Suspend(r.Context(), cscCaller(r), id, req.Reason))
}

func (s *Server) handleRemoteResume(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "credentialID")
	s.remoteAfter(w, r, http.StatusOK, id, s.remoteRA().Resume(r.Context(), cscCaller(r), id))
}

func (s *Server) handleRemoteBlock(w http.ResponseWriter, r *http.Request) {
	var req remoteReasonRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	id := chi.URLParam(r, "credentialID")
	s.remoteAfter(w, r, http.StatusOK, id, s.remoteRA().Block(r.Context(), cscCaller(r), id, req.Reason))
}

func (s *Server) handleRemoteRevoke(w http.ResponseWriter, r *http.Request) {
	var req remoteRevokeRequest
	if err := decodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Reason == nil || *req.Reason < 0 || *req.Reason > 10 || *req.Reason == 6 || *req.Reason == 7 || *req.Reason == 8 {
		s.problem(w, probInvalid, "reason must be an RFC 5280 reason code (0-5, 9, 10); certificateHold and removeFromCRL do not end a credential")
		return
	}
	id := chi.URLParam(r, "credentialID")
	s.remoteAfter(w, r, http.StatusOK, id, s.remoteRA().Revoke(r.Context(), cscCaller(r), id, *req.Reason))
}

func (s *Server) handleRemoteRekey(w http.ResponseWriter, r *http.Request) {
	c, err := s.remoteRA().Rekey(r.Context(), cscCaller(r), chi.URLParam(r, "credentialID"))
	if err != nil {
		s.remoteFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, remoteCredentialView(c))
}
