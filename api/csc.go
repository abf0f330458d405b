package api

// This file is the HTTP binding of the Cloud Signature Consortium API v2 (CSC API v2.0.0.2 §11) for remote
// signing (package signing/remote, docs/remote-signing.md): info, credentials/list, credentials/info,
// credentials/authorize and signatures/signHash under /csc/v2/, on the mTLS API. The caller's identity is
// the client certificate (the CSC "service authorization" is the TLS client authentication); a remote
// credential is activated per call with a WebAuthn passkey (auth/mode "explicit", SCAL 2).
//
// Errors follow the CSC specification's format ({"error", "error_description"}, §10.2) and its names, not
// RFC 9457: signing applications written against CSC read those. Refusals by the access matrix (wrong
// role, no certificate) stay problem documents, as on every other route.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/signing/remote"
)

// RemoteSigning is the remote signing service (*remote.Service).
type RemoteSigning interface {
	List(ctx context.Context, c remote.Caller) ([]remote.Credential, error)
	Info(ctx context.Context, c remote.Caller, credID string) (remote.Credential, error)
	BeginActivation(ctx context.Context, c remote.Caller, credID string, hashes [][]byte) (remote.ActivationRequest, error)
	Activate(ctx context.Context, c remote.Caller, credID, requestID string, assertion []byte) (remote.Activation, error)
	// ActivateParked is Activate with the assertion the activation page (api/web/remotepage) received for
	// the request; remote.ErrPending while the physician has not approved.
	ActivateParked(ctx context.Context, c remote.Caller, credID, requestID string) (remote.Activation, error)
	SignHash(ctx context.Context, c remote.Caller, credID, sad string, hashes [][]byte) ([][]byte, error)
	MaxHashes() int
	// ActivateWithCard is Activate with the national ID card factor (its INTERNAL AUTHENTICATE answer).
	ActivateWithCard(ctx context.Context, c remote.Caller, credID, requestID string, ans remote.CardAnswer) (remote.Activation, error)
	// Factors lists a credential's passkeys and registered cards.
	Factors(ctx context.Context, c remote.Caller, credID string) ([][]byte, []remote.Card, error)
}

// OIDs of the CSC parameters Mohr accepts: SHA-256 (hashAlgorithmOID) and ECDSA with SHA-256 or the bare
// id-ecPublicKey (signAlgo; CSC §11.10: the hash is then given by hashAlgorithmOID), curve P-256.
const (
	oidSHA256          = "2.16.840.1.101.3.4.2.1"
	oidECDSAWithSHA256 = "1.2.840.10045.4.3.2"
	oidECPublicKey     = "1.2.840.10045.2.1"
	oidP256            = "1.2.840.10045.3.1.7"
)

// The authData object IDs of Mohr's WebAuthn activation (credentials/info auth/objects).
const (
	cscAuthHandle    = "webauthn_handle"
	cscAuthAssertion = "webauthn_assertion"
)

func init() {
	bodyTypes["cscInfo"] = [2]any{cscInfoRequest{}, map[string]any{}}
	bodyTypes["cscCredentialsList"] = [2]any{cscListRequest{}, map[string]any{}}
	bodyTypes["cscCredentialsInfo"] = [2]any{cscInfoCredRequest{}, map[string]any{}}
	bodyTypes["cscAuthorize"] = [2]any{cscAuthorizeRequest{}, map[string]any{}}
	bodyTypes["cscSignHash"] = [2]any{cscSignHashRequest{}, struct {
		Signatures []string `json:"signatures"`
	}{}}
	needs := func(s *Services) bool { return s.Remote != nil }
	phys := roles(RolePhysician)
	routes = append(routes,
		&route{method: "POST", pattern: "/csc/v2/info", op: "cscInfo", summary: "CSC API v2 info: the remote signing service",
			tag: "csc", public: true, body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 200,
			needs: needs, handle: (*Server).handleCSCInfo},
		&route{method: "POST", pattern: "/csc/v2/credentials/list", op: "cscCredentialsList", auditDenied: true, summary: "CSC API v2: the calling physician's remote credentials",
			tag: "csc", roles: phys, body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 200,
			needs: needs, handle: (*Server).handleCSCList},
		&route{method: "POST", pattern: "/csc/v2/credentials/info", op: "cscCredentialsInfo", auditDenied: true, summary: "CSC API v2: one of the calling physician's remote credentials",
			tag: "csc", roles: phys, body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 200,
			needs: needs, handle: (*Server).handleCSCInfoCredential},
		&route{method: "POST", pattern: "/csc/v2/credentials/authorize", op: "cscAuthorize", auditDenied: true, summary: "CSC API v2: activate a remote credential for hashes (202 with a WebAuthn challenge, then 200 with the SAD for the assertion)",
			tag: "csc", roles: phys, body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 200,
			needs: needs, handle: (*Server).handleCSCAuthorize},
		&route{method: "POST", pattern: "/csc/v2/signatures/signHash", op: "cscSignHash", auditDenied: true, summary: "CSC API v2: sign hashes the SAD covers with the remote credential's HSM key",
			tag: "csc", roles: phys, signs: true, body: jsonBody, reqTypes: []string{ctJSON}, respType: ctJSON, okStatus: 200,
			needs: needs, handle: (*Server).handleCSCSignHash},
	)
}

// auditDeniedRole records in the audit log that a caller whose role may not use a route marked auditDenied
// (an operator, an RA officer, the local admin on a CSC route) tried: EN 419 241-1 wants attempts to
// activate or use a signing key by anyone but its holder to be traceable. The body is not read.
func (s *Server) auditDeniedRole(r *http.Request, rt *route, id *Identity) {
	if !rt.auditDenied || s.svc.Auditor == nil || id == nil {
		return
	}
	data, _ := json.Marshal(map[string]string{"op": rt.op, "reason": "role " + string(id.Role) + " may not call " + rt.pattern})
	ev := audit.Event{Time: s.cfg.Now().UTC(), Kind: "remote.refused", Actor: id.Actor(), Subject: rt.pattern, Data: data}
	if err := s.svc.Auditor.AppendAudit(r.Context(), ev); err != nil {
		s.noteError(r, err, opaqueID())
	}
}

// cscErr writes a CSC error (§10.2).
func cscErr(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// cscFail maps a remote error to the CSC error the specification names for it. Internal detail (HSM, SQL)
// never reaches the client.
func (s *Server) cscFail(w http.ResponseWriter, r *http.Request, op string, err error) {
	bad := func(desc string) { cscErr(w, http.StatusBadRequest, "invalid_request", desc) }
	switch {
	case errors.Is(err, remote.ErrForbidden):
		cscErr(w, http.StatusForbidden, "access_denied", "The caller may not use this credential")
	case errors.Is(err, remote.ErrNotFound) && op == "signHash" && !strings.Contains(err.Error(), "credential"):
		bad("Invalid parameter SAD")
	case errors.Is(err, remote.ErrNotFound) && op == "authorize" && strings.Contains(err.Error(), "activation request"):
		bad("Invalid parameter " + cscAuthHandle)
	case errors.Is(err, remote.ErrNotFound):
		bad("Invalid parameter credentialID")
	case errors.Is(err, remote.ErrCertificateExpired):
		bad("Signing certificate is expired")
	case errors.Is(err, remote.ErrCredentialStatus) && strings.Contains(err.Error(), string(remote.StatusBlocked)):
		bad("Credential locked")
	case errors.Is(err, remote.ErrCredentialStatus):
		bad("The credential identified by credentialID is disabled")
	case errors.Is(err, remote.ErrAssertion), errors.Is(err, remote.ErrCardRefused):
		cscErr(w, http.StatusBadRequest, "invalid_authentication_data", "The authentication data is invalid")
	case errors.Is(err, remote.ErrExpired) && op == "signHash":
		bad("SAD expired")
	case errors.Is(err, remote.ErrExpired):
		cscErr(w, http.StatusBadRequest, "invalid_authentication_data", "The authentication request is expired")
	case errors.Is(err, remote.ErrNotAuthorized) && (strings.Contains(err.Error(), "another credential") || strings.Contains(err.Error(), "no SAD")):
		bad("Invalid parameter SAD")
	case errors.Is(err, remote.ErrUsed) && op == "signHash", errors.Is(err, remote.ErrNotAuthorized):
		bad("Hash is not authorized by the SAD")
	case errors.Is(err, remote.ErrUsed):
		cscErr(w, http.StatusBadRequest, "invalid_authentication_data", "The authentication request was already used")
	case errors.Is(err, remote.ErrBadRequest) && strings.Contains(err.Error(), "bytes"):
		bad("Invalid digest value length")
	case errors.Is(err, remote.ErrBadRequest):
		bad("Numbers of signatures is too high, or an empty or repeated hash")
	default:
		s.noteError(r, err, opaqueID())
		cscErr(w, http.StatusInternalServerError, "server_error", "Internal error")
	}
}

// cscCaller is the remote.Caller of an authenticated request.
func cscCaller(r *http.Request) remote.Caller {
	id, _ := IdentityFrom(r.Context())
	return remote.Caller{Role: string(id.Role), CouncilNumber: id.CouncilNumber, Actor: id.Actor()}
}

type cscInfoRequest struct {
	Lang string `json:"lang,omitempty"`
}

func (s *Server) handleCSCInfo(w http.ResponseWriter, r *http.Request) {
	var req cscInfoRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &req); err != nil {
			cscErr(w, http.StatusBadRequest, "invalid_request", "Malformed request body")
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"specs": "2.0.0.2", "name": "Mohr remote signing", "logo": "", "region": "IR", "lang": "en-US",
		"description":    "Remote signing for physicians: keys in the signing centre's HSM, each activation by the physician's passkey (EN 419 241-1 SCAL2)",
		"authType":       []string{"external"}, // mTLS client certificates of the health intermediate CA
		"methods":        []string{"credentials/list", "credentials/info", "credentials/authorize", "signatures/signHash"},
		"signAlgorithms": map[string]any{"algos": []string{oidECDSAWithSHA256, oidECPublicKey}},
	})
}

type cscListRequest struct {
	UserID         *string `json:"userID,omitempty"`
	CredentialInfo bool    `json:"credentialInfo,omitempty"`
	Certificates   string  `json:"certificates,omitempty"`
	CertInfo       bool    `json:"certInfo,omitempty"`
	AuthInfo       bool    `json:"authInfo,omitempty"`
	OnlyValid      bool    `json:"onlyValid,omitempty"`
	Lang           string  `json:"lang,omitempty"`
	ClientData     string  `json:"clientData,omitempty"`
}

func validCertificatesParam(s string) bool {
	return s == "" || s == "none" || s == "single" || s == "chain"
}

func (s *Server) handleCSCList(w http.ResponseWriter, r *http.Request) {
	var req cscListRequest
	if err := decodeJSON(r, &req); err != nil {
		cscErr(w, http.StatusBadRequest, "invalid_request", "Malformed request body")
		return
	}
	if req.UserID != nil {
		cscErr(w, http.StatusBadRequest, "invalid_request", "userID parameter MUST be null")
		return
	}
	if !validCertificatesParam(req.Certificates) {
		cscErr(w, http.StatusBadRequest, "invalid_request", "Invalid parameter certificates")
		return
	}
	creds, err := s.svc.Remote.List(r.Context(), cscCaller(r))
	if err != nil {
		s.cscFail(w, r, "list", err)
		return
	}
	ids := []string{}
	infos := []map[string]any{}
	for _, c := range creds {
		if req.OnlyValid && c.Status != remote.StatusActive {
			continue
		}
		ids = append(ids, c.ID)
		if req.CredentialInfo {
			info := s.cscCredentialInfo(c, req.Certificates, req.CertInfo, req.AuthInfo)
			info["credentialID"] = c.ID
			infos = append(infos, info)
		}
	}
	out := map[string]any{"credentialIDs": ids}
	if req.CredentialInfo {
		out["credentialInfos"] = infos
	}
	if req.OnlyValid {
		out["onlyValid"] = true
	}
	writeJSON(w, http.StatusOK, out)
}

// cscCredentialInfo is the CredentialInfo object of CSC §11.4/§11.5 for c.
func (s *Server) cscCredentialInfo(c remote.Credential, certs string, certInfo, authInfo bool) map[string]any {
	keyStatus := "enabled"
	if c.Status != remote.StatusActive {
		keyStatus = "disabled"
	}
	info := map[string]any{
		"description": "Remote signing key of " + c.Name + " (council number " + c.CouncilNumber + ")",
		"key":         map[string]any{"status": keyStatus, "algo": []string{oidECDSAWithSHA256, oidECPublicKey}, "len": 256, "curve": oidP256},
		"SCAL":        "2",
		"multisign":   s.svc.Remote.MaxHashes(),
		"lang":        "en-US",
	}
	chain, err := c.Certificates()
	if err == nil && len(chain) > 0 {
		leaf := chain[0]
		status := "valid"
		switch {
		case c.Status == remote.StatusRevoked:
			status = "revoked"
		case c.Status == remote.StatusSuspended:
			status = "suspended"
		case s.cfg.Now().After(leaf.NotAfter):
			status = "expired"
		}
		cert := map[string]any{"status": status}
		switch certs {
		case "", "single":
			cert["certificates"] = []string{base64.StdEncoding.EncodeToString(leaf.Raw)}
		case "chain":
			var all []string
			for _, x := range chain {
				all = append(all, base64.StdEncoding.EncodeToString(x.Raw))
			}
			cert["certificates"] = all
		}
		if certInfo {
			cert["issuerDN"] = leaf.Issuer.String()
			cert["subjectDN"] = leaf.Subject.String()
			cert["serialNumber"] = strings.ToUpper(leaf.SerialNumber.Text(16))
			cert["validFrom"] = leaf.NotBefore.UTC().Format("20060102150405Z")
			cert["validTo"] = leaf.NotAfter.UTC().Format("20060102150405Z")
		}
		info["cert"] = cert
	}
	auth := map[string]any{"mode": "explicit"}
	if authInfo {
		auth["expression"] = cscAuthActivationHandle + " AND (" + cscAuthAssertion + " OR (" + cscAuthCardCertificate + " AND " + cscAuthCardSignature + "))"
		auth["objects"] = []map[string]any{
			{"type": "ChallengeResponse", "id": cscAuthActivationHandle, "format": "A", "label": "Activation request",
				"description": "The handle of the 202 answer of credentials/authorize (" + cscAuthHandle + " is accepted as the same)"},
			{"type": "WebAuthn", "id": cscAuthAssertion, "format": "A", "label": "Passkey",
				"description": "The base64url JSON PublicKeyCredential answering the WebAuthn challenge over the hashes (user verification required)"},
			{"type": "Certificate", "id": cscAuthCardCertificate, "format": "A", "label": "National ID card",
				"description": "The registered national ID card's authentication certificate, base64 DER"},
			{"type": "ChallengeResponse", "id": cscAuthCardSignature, "format": "A", "label": "National ID card answer",
				"description": "The card's INTERNAL AUTHENTICATE answer (after its PIN) over the 202 answer's challenge: base64 plain ECDSA r||s, 64 bytes"},
		}
	}
	info["auth"] = auth
	return info
}

type cscInfoCredRequest struct {
	CredentialID *string `json:"credentialID"`
	Certificates string  `json:"certificates,omitempty"`
	CertInfo     bool    `json:"certInfo,omitempty"`
	AuthInfo     bool    `json:"authInfo,omitempty"`
	Lang         string  `json:"lang,omitempty"`
	ClientData   string  `json:"clientData,omitempty"`
}

func (s *Server) handleCSCInfoCredential(w http.ResponseWriter, r *http.Request) {
	var req cscInfoCredRequest
	if err := decodeJSON(r, &req); err != nil {
		cscErr(w, http.StatusBadRequest, "invalid_request", "Malformed request body")
		return
	}
	if req.CredentialID == nil || *req.CredentialID == "" {
		cscErr(w, http.StatusBadRequest, "invalid_request", "Missing (or invalid type) string parameter credentialID")
		return
	}
	if !validCertificatesParam(req.Certificates) {
		cscErr(w, http.StatusBadRequest, "invalid_request", "Invalid parameter certificates")
		return
	}
	c, err := s.svc.Remote.Info(r.Context(), cscCaller(r), *req.CredentialID)
	if err != nil {
		s.cscFail(w, r, "info", err)
		return
	}
	info := s.cscCredentialInfo(c, req.Certificates, req.CertInfo, req.AuthInfo)
	pks, cards, err := s.svc.Remote.Factors(r.Context(), cscCaller(r), c.ID)
	if err != nil {
		s.cscFail(w, r, "info", err)
		return
	}
	info["factors"] = factorsView(pks, cards) // Mohr's extension: the registered activation factors
	writeJSON(w, http.StatusOK, info)
}

type cscAuthObject struct {
	ID    string `json:"id"`
	Value string `json:"value"`
}

type cscAuthorizeRequest struct {
	CredentialID     *string         `json:"credentialID"`
	NumSignatures    *int            `json:"numSignatures"`
	Hashes           []string        `json:"hashes,omitempty"`
	HashAlgorithmOID string          `json:"hashAlgorithmOID,omitempty"`
	AuthData         []cscAuthObject `json:"authData,omitempty"`
	Description      string          `json:"description,omitempty"`
	ClientData       string          `json:"clientData,omitempty"`
}

// decodeHashes decodes CSC base64 hashes (standard or URL alphabet, padded or not).
func decodeHashes(in []string) ([][]byte, bool) {
	out := make([][]byte, len(in))
	for i, h := range in {
		var err error
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if out[i], err = enc.DecodeString(h); err == nil {
				break
			}
		}
		if err != nil {
			return nil, false
		}
	}
	return out, true
}

// handleCSCAuthorize is credentials/authorize in two steps (CSC §11.6 with its 202 answer): without
// authData it starts the WebAuthn activation over the hashes and answers 202 with the handle and the
// assertion options (publicKey); with authData webauthn_handle and webauthn_assertion it checks the
// assertion and answers 200 with the SAD.
func (s *Server) handleCSCAuthorize(w http.ResponseWriter, r *http.Request) {
	var req cscAuthorizeRequest
	if err := decodeJSON(r, &req); err != nil {
		cscErr(w, http.StatusBadRequest, "invalid_request", "Malformed request body")
		return
	}
	bad := func(desc string) { cscErr(w, http.StatusBadRequest, "invalid_request", desc) }
	switch {
	case req.CredentialID == nil || *req.CredentialID == "":
		bad("Missing (or invalid type) string parameter credentialID")
		return
	case req.NumSignatures == nil:
		bad("Missing (or invalid type) integer parameter numSignatures")
		return
	case *req.NumSignatures < 1:
		bad("Invalid value for parameter numSignatures")
		return
	case *req.NumSignatures > s.svc.Remote.MaxHashes():
		bad("Numbers of signatures is too high")
		return
	case len(req.Hashes) == 0:
		bad("Missing (or invalid type) array parameter hashes") // SCAL 2: the hashes are required
		return
	case len(req.Hashes) != *req.NumSignatures:
		bad("Invalid value for parameter numSignatures")
		return
	case req.HashAlgorithmOID != "" && req.HashAlgorithmOID != oidSHA256:
		bad("Invalid parameter hashAlgorithmOID")
		return
	}
	hashes, ok := decodeHashes(req.Hashes)
	if !ok {
		bad("Invalid Base64 hash string parameter")
		return
	}
	c := cscCaller(r)
	if len(req.AuthData) == 0 {
		ar, err := s.svc.Remote.BeginActivation(r.Context(), c, *req.CredentialID, hashes)
		if err != nil {
			s.cscFail(w, r, "authorize", err)
			return
		}
		out := map[string]any{"handle": ar.ID, "expiresIn": int(ar.ExpiresAt.Sub(s.cfg.Now()).Seconds()),
			// The challenge over the hashes, for the national ID card factor (INTERNAL AUTHENTICATE signs it).
			"challenge": base64.StdEncoding.EncodeToString(ar.Challenge)}
		if ar.Options != nil {
			out["publicKey"] = ar.Options.Response
		}
		writeJSON(w, http.StatusAccepted, out)
		return
	}
	ad, perr := parseAuthData(req.AuthData)
	if perr != nil {
		cscErr(w, http.StatusBadRequest, "invalid_authentication_data", "The authentication data is invalid")
		return
	}
	var act remote.Activation
	var err error
	switch {
	case ad.card != nil:
		// The national ID card factor: its answer (after its PIN, on the card) over the same challenge.
		act, err = s.svc.Remote.ActivateWithCard(r.Context(), c, *req.CredentialID, ad.handle, *ad.card)
	case ad.assertion != nil:
		act, err = s.svc.Remote.Activate(r.Context(), c, *req.CredentialID, ad.handle, ad.assertion)
	default:
		// The physician approves on Mohr's activation page (/remote/activate?h=<handle>), which parks the
		// assertion: 202 again while they have not, then the SAD.
		act, err = s.svc.Remote.ActivateParked(r.Context(), c, *req.CredentialID, ad.handle)
		if errors.Is(err, remote.ErrPending) {
			writeJSON(w, http.StatusAccepted, map[string]any{"handle": ad.handle, "status": "pending"})
			return
		}
	}
	if err != nil {
		s.cscFail(w, r, "authorize", err)
		return
	}
	// The hashes of the second call must be the ones the challenge was made over.
	if !sameHashes(act.Hashes, hashes) {
		cscErr(w, http.StatusBadRequest, "invalid_request", "Invalid parameter hashes")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"SAD": act.SAD, "expiresIn": int(act.ExpiresAt.Sub(s.cfg.Now()).Seconds())})
}

func sameHashes(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if string(a[i]) != string(b[i]) {
			return false
		}
	}
	return true
}

type cscSignHashRequest struct {
	CredentialID     *string  `json:"credentialID"`
	SAD              *string  `json:"SAD"`
	Hashes           []string `json:"hashes"`
	HashAlgorithmOID string   `json:"hashAlgorithmOID,omitempty"`
	SignAlgo         *string  `json:"signAlgo"`
	SignAlgoParams   string   `json:"signAlgoParams,omitempty"`
	OperationMode    string   `json:"operationMode,omitempty"`
	ClientData       string   `json:"clientData,omitempty"`
}

func (s *Server) handleCSCSignHash(w http.ResponseWriter, r *http.Request) {
	var req cscSignHashRequest
	if err := decodeJSON(r, &req); err != nil {
		cscErr(w, http.StatusBadRequest, "invalid_request", "Malformed request body")
		return
	}
	bad := func(desc string) { cscErr(w, http.StatusBadRequest, "invalid_request", desc) }
	switch {
	case req.CredentialID == nil || *req.CredentialID == "":
		bad("Missing (or invalid type) string parameter credentialID")
		return
	case req.SAD == nil || *req.SAD == "":
		bad("Missing (or invalid type) string parameter SAD")
		return
	case req.Hashes == nil:
		bad("Missing (or invalid type) array parameter hash")
		return
	case len(req.Hashes) == 0:
		bad("Empty hash array")
		return
	case req.SignAlgo == nil:
		bad("Missing (or invalid type) string parameter signAlgo")
		return
	case *req.SignAlgo != oidECDSAWithSHA256 && *req.SignAlgo != oidECPublicKey:
		bad("Invalid parameter signAlgo")
		return
	case *req.SignAlgo == oidECPublicKey && req.HashAlgorithmOID == "":
		bad("Missing (or invalid type) string parameter hashAlgorithmOID")
		return
	case req.HashAlgorithmOID != "" && req.HashAlgorithmOID != oidSHA256:
		bad("Invalid parameter hashAlgorithmOID")
		return
	case req.OperationMode != "" && req.OperationMode != "S":
		bad("Invalid parameter operationMode") // asynchronous signing is not offered
		return
	}
	hashes, ok := decodeHashes(req.Hashes)
	if !ok {
		bad("Invalid Base64 hash string parameter")
		return
	}
	sigs, err := s.svc.Remote.SignHash(r.Context(), cscCaller(r), *req.CredentialID, *req.SAD, hashes)
	if err != nil {
		s.cscFail(w, r, "signHash", err)
		return
	}
	out := make([]string, len(sigs))
	for i, sig := range sigs {
		out[i] = base64.StdEncoding.EncodeToString(sig)
	}
	writeJSON(w, http.StatusOK, map[string]any{"signatures": out})
}
