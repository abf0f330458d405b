package remote

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/ids"
	"github.com/mohr-hix/mohr/keys"
)

// KeyStore is what the service needs of the HSM; *hsm.Opener implements it. The HSM pool (package hsm) is
// the only code that touches the keys; this package holds URIs and crypto.Signers.
type KeyStore interface {
	GenerateKey(ctx context.Context, uri, alg string) (crypto.Signer, error)
	OpenSigner(ctx context.Context, uri string) (crypto.Signer, error)
	DestroyKey(ctx context.Context, uri string) error
}

// IssueRequest asks the CA for a remote physician-signing certificate.
type IssueRequest struct {
	CSR           *x509.CertificateRequest
	NationalCode  string
	CouncilNumber string
	Name          string
	Actor         string
}

// Roles the service knows, as package api names them.
const (
	RolePhysician = "physician"
	RoleRAOfficer = "ra-officer"
	RoleOperator  = "operator"
	RoleAuditor   = "auditor"
)

// Caller is who asks: the role the API authenticated, the council number for a physician, and an actor
// string for the audit log.
type Caller struct {
	Role          string
	CouncilNumber string
	Actor         string
}

// Config wires a Service.
type Config struct {
	Store Store
	Keys  KeyStore
	// KeyToken is the pkcs11: URI of the token that holds the remote keys, without an object, e.g.
	// "pkcs11:token=MohrRemote?pin-source=file:/etc/mohr/remote.pin". Each key gets object=<label>.
	KeyToken string
	// KeyAlg is the key algorithm (hsm names: "EC-P256", the default).
	KeyAlg string
	// Issue issues the certificate (the composition root: ca.Request with ProfilePhysicianSigning and
	// RemoteSigning) and returns the chain, signing certificate first, without the root.
	Issue func(ctx context.Context, r IssueRequest) ([]*x509.Certificate, error)
	// Revoke, if set, revokes the certificate of a credential (RFC 5280 reason code) at the CA.
	Revoke func(ctx context.Context, cert *x509.Certificate, reason int, actor string) error
	// RPID, RPName and RPOrigins are the WebAuthn relying party: the RP ID (a domain; "localhost" in tests)
	// and the origins whose pages may run the ceremonies.
	RPID      string
	RPName    string
	RPOrigins []string
	// MaxHashes is the comfort limit: most hashes one activation covers (default 100).
	MaxHashes int
	// ChallengeTTL is how long an activation request (its nonce) lives (default 2 minutes); SADTTL how long
	// the SAD lives (default 1 minute).
	ChallengeTTL time.Duration
	SADTTL       time.Duration
	// RegistrationTTL is how long a passkey registration (its one-use registration code) lives (default 30
	// minutes: the RA hands the code over and the physician registers at the desk or soon after).
	RegistrationTTL time.Duration
	// CheckRegistry, if set, is the registry check at enrolment: it must return nil only when the medical
	// council's registry has councilNumber, in good standing, for the person with nationalCode. Enrol calls it
	// before it generates a key; a refusal is wrapped in ErrRegistry.
	CheckRegistry func(ctx context.Context, nationalCode, councilNumber string) error
	// CardIssuers are the national ID card issuers' CA certificates: a card certificate must chain to one of
	// them (at the service's clock) to be registered or to activate. Empty: the card factor is refused.
	CardIssuers []*x509.Certificate
	// CardCRLs, if set, returns the national ID card issuers' current CRLs (RFC 5280): a card certificate
	// must then be covered by a CRL of its issuer (signed by it, not past its nextUpdate by the service's
	// clock) that does not list it, at registration and at every activation. Unset: no revocation check.
	CardCRLs func(ctx context.Context) ([]*x509.RevocationList, error)
	// Now and Rand default to time.Now and crypto/rand.
	Now  func() time.Time
	Rand io.Reader
}

// Service is the remote signing service.
type Service struct {
	cfg Config
	wa  *webauthn.WebAuthn

	mu      sync.Mutex
	signers map[string]crypto.Signer // credential ID -> HSM key, opened once
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Keys == nil || cfg.Issue == nil {
		return nil, errors.New("remote: New needs a store, a key store and an issuer")
	}
	if !strings.HasPrefix(strings.ToLower(cfg.KeyToken), "pkcs11:") || strings.Contains(cfg.KeyToken, "object=") {
		return nil, errors.New("remote: KeyToken must be a pkcs11: URI of a token, without object=")
	}
	if cfg.KeyAlg == "" {
		cfg.KeyAlg = "EC-P256"
	}
	if cfg.MaxHashes <= 0 {
		cfg.MaxHashes = 100
	}
	if cfg.ChallengeTTL <= 0 {
		cfg.ChallengeTTL = 2 * time.Minute
	}
	if cfg.SADTTL <= 0 {
		cfg.SADTTL = time.Minute
	}
	if cfg.RegistrationTTL <= 0 {
		cfg.RegistrationTTL = 30 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.RPName == "" {
		cfg.RPName = "Mohr remote signing"
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID: cfg.RPID, RPDisplayName: cfg.RPName, RPOrigins: cfg.RPOrigins,
		AuthenticatorSelection: protocol.AuthenticatorSelection{UserVerification: protocol.VerificationRequired},
	})
	if err != nil {
		return nil, fmt.Errorf("remote: webauthn: %w", err)
	}
	return &Service{cfg: cfg, wa: wa, signers: map[string]crypto.Signer{}}, nil
}

// MaxHashes returns the comfort limit.
func (s *Service) MaxHashes() int { return s.cfg.MaxHashes }

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

func (s *Service) random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.cfg.Rand, b); err != nil {
		return nil, fmt.Errorf("remote: random: %w", err)
	}
	return b, nil
}

// event builds an audit event; data never holds a secret (SADs appear only as their SHA-256).
func (s *Service) event(kind string, c Caller, subject string, data map[string]any) audit.Event {
	raw, _ := json.Marshal(data)
	actor := c.Actor
	if actor == "" {
		actor = c.Role
	}
	return audit.Event{Time: s.now(), Kind: kind, Actor: actor, Subject: subject, Data: raw}
}

// refuse audits a refused attempt and returns err. The audit write's own failure is joined, so that a
// refusal is never silent.
func (s *Service) refuse(ctx context.Context, op string, c Caller, credID string, hashes [][]byte, err error) error {
	data := map[string]any{"op": op, "reason": err.Error()}
	if len(hashes) > 0 {
		data["hashes"] = hexStrings(hashes)
	}
	if aerr := s.cfg.Store.Audit(ctx, s.event("remote.refused", c, credID, data)); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

func hexStrings(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h)
	}
	return out
}

// EnrolRequest is what the RA officer enters at enrolment, in person.
type EnrolRequest struct {
	NationalCode  string
	CouncilNumber string
	Name          string
	// IdentityCheck records how the physician's identity was established in person, as the RA officer's
	// client reports it (for example its own check of the national ID card). Audited as given. Required
	// without Card.
	IdentityCheck string
	// Card is the physician's national ID card's answer to an enrolment challenge the exchange issued to this
	// RA officer (BeginCardChallenge with PurposeEnrol). The exchange verifies it itself (chain to
	// Config.CardIssuers, validity, the signature over its own challenge, NationalCode) before anything else;
	// when Config.CardIssuers is set, an enrolment without it is refused.
	Card *EnrolCard
}

// EnrolCard is the national ID card's part of an enrolment.
type EnrolCard struct {
	ChallengeID string
	Answer      CardAnswer
	// Register also registers the card as an activation factor of the new credential (which is then active).
	Register bool
}

// Registration is a WebAuthn registration ceremony to run on the physician's authenticator.
type Registration struct {
	// ID identifies the ceremony (FinishPasskeyRegistration).
	ID string
	// Code is the one-use registration code the RA officer hands the physician in person; the physician
	// enters it on the registration page (RegistrationOptions, FinishRegistrationWithCode). It is a secret
	// until used: only its hash (ID) is stored.
	Code      string
	Options   *protocol.CredentialCreation
	ExpiresAt time.Time
}

// Enrol generates the physician's key in the HSM, has the certificate issued and starts the passkey
// registration. Only an RA officer may enrol. If issuance fails the new key is destroyed again.
func (s *Service) Enrol(ctx context.Context, c Caller, r EnrolRequest) (Credential, Registration, error) {
	if c.Role != RoleRAOfficer {
		return Credential{}, Registration{}, s.refuse(ctx, "enrol", c, "", nil, fmt.Errorf("%w: only an RA officer enrols", ErrForbidden))
	}
	var err error
	if r.NationalCode, err = ids.NationalCode(r.NationalCode); err != nil {
		return Credential{}, Registration{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if r.CouncilNumber, err = ids.CouncilNumber(r.CouncilNumber); err != nil {
		return Credential{}, Registration{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if strings.TrimSpace(r.Name) == "" || (r.Card == nil && strings.TrimSpace(r.IdentityCheck) == "") {
		return Credential{}, Registration{}, fmt.Errorf("%w: name and identity check are required", ErrBadRequest)
	}
	// The exchange's own check of the national ID card, before the registry and before any key exists.
	var card *CheckedCard
	switch {
	case r.Card != nil:
		k, err := s.enrolmentCard(ctx, c, r)
		if err != nil {
			return Credential{}, Registration{}, s.refuse(ctx, "enrol", c, r.CouncilNumber, nil, err)
		}
		card = &k
	case len(s.cfg.CardIssuers) > 0:
		return Credential{}, Registration{}, s.refuse(ctx, "enrol", c, r.CouncilNumber, nil,
			fmt.Errorf("%w: the national ID card's answer to an enrolment challenge is required", ErrCardRefused))
	}
	if s.cfg.CheckRegistry != nil {
		if err := s.cfg.CheckRegistry(ctx, r.NationalCode, r.CouncilNumber); err != nil {
			return Credential{}, Registration{}, s.refuse(ctx, "enrol", c, r.CouncilNumber, nil, fmt.Errorf("%w: %v", ErrRegistry, err))
		}
	}
	cred, err := s.newKeyAndCertificate(ctx, c, r.NationalCode, r.CouncilNumber, r.Name)
	if err != nil {
		return Credential{}, Registration{}, err
	}
	leaf, _ := x509.ParseCertificate(cred.Chain[0])
	data := map[string]any{
		"council_number": cred.CouncilNumber, "key_label": cred.KeyLabel, "serial": leaf.SerialNumber.Text(16),
		"policy": hixext.OIDPolicyRemoteSigning.String(), "identity_check": r.IdentityCheck,
	}
	if card != nil {
		data["identity_check_server"] = card.Evidence()
		data["card_challenge_id"] = r.Card.ChallengeID
	}
	if err := s.cfg.Store.CreateCredential(ctx, cred, s.event("remote.credential.enrolled", c, cred.ID, data)); err != nil {
		s.destroyKey(ctx, c, cred, "enrolment not recorded")
		return Credential{}, Registration{}, err
	}
	if card != nil && r.Card.Register {
		ev := card.Evidence()
		ev["at_enrolment"] = true
		if err := s.cfg.Store.AddCard(ctx, newCard(cred.ID, *card, s.now()), true, s.event("remote.card.registered", c, cred.ID, ev)); err != nil {
			return cred, Registration{}, err
		}
		cred.Status = StatusActive
	}
	reg, err := s.beginRegistration(ctx, c, cred)
	if err != nil {
		return cred, Registration{}, err
	}
	return cred, reg, nil
}

// newKeyAndCertificate generates a key labelled for the physician and has its certificate issued.
func (s *Service) newKeyAndCertificate(ctx context.Context, c Caller, nationalCode, council, name string) (Credential, error) {
	rnd, err := s.random(12)
	if err != nil {
		return Credential{}, err
	}
	id := hex.EncodeToString(rnd)
	label := "remote-" + council + "-" + id[:12]
	uri := s.keyURI(label)
	signer, err := s.cfg.Keys.GenerateKey(ctx, uri, s.cfg.KeyAlg)
	if err != nil {
		return Credential{}, fmt.Errorf("%w: generate: %w", ErrKey, err)
	}
	now := s.now()
	cred := Credential{ID: id, UserHandle: id, CouncilNumber: council, NationalCode: nationalCode, Name: name, KeyURI: uri, KeyLabel: label,
		Status: StatusPending, CreatedAt: now, UpdatedAt: now}
	fail := func(err error) (Credential, error) {
		s.destroyKey(ctx, c, cred, "certificate not issued")
		return Credential{}, err
	}
	csrDER, err := x509.CreateCertificateRequest(s.cfg.Rand, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, signer)
	if err != nil {
		return fail(fmt.Errorf("%w: CSR: %w", ErrKey, err))
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return fail(fmt.Errorf("%w: CSR: %w", ErrKey, err))
	}
	chain, err := s.cfg.Issue(ctx, IssueRequest{CSR: csr, NationalCode: nationalCode, CouncilNumber: council, Name: name, Actor: c.Actor})
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrIssue, err))
	}
	if len(chain) == 0 {
		return fail(fmt.Errorf("%w: empty chain", ErrIssue))
	}
	if err := keys.MatchesCertificate(signer, chain[0]); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrIssue, err))
	}
	if !HasRemotePolicy(chain[0]) {
		return fail(fmt.Errorf("%w: the certificate does not assert the remote-signing policy", ErrIssue))
	}
	for _, x := range chain {
		cred.Chain = append(cred.Chain, x.Raw)
	}
	s.mu.Lock()
	s.signers[id] = signer
	s.mu.Unlock()
	return cred, nil
}

// HasRemotePolicy reports whether cert asserts the remote-signing certificate policy.
func HasRemotePolicy(cert *x509.Certificate) bool {
	want, err := x509.OIDFromInts([]uint64{2, 999, 1742, 6, 1})
	if err != nil || !want.EqualASN1OID(hixext.OIDPolicyRemoteSigning) {
		return false
	}
	for _, p := range cert.Policies {
		if p.Equal(want) {
			return true
		}
	}
	return false
}

// keyURI puts object=label into the token URI's path.
func (s *Service) keyURI(label string) string {
	u := s.cfg.KeyToken
	path, query, hasQuery := strings.Cut(u, "?")
	out := path + ";object=" + label
	if hasQuery {
		out += "?" + query
	}
	return out
}

// destroyKey destroys cred's key in the HSM and audits it (or audits the failure).
func (s *Service) destroyKey(ctx context.Context, c Caller, cred Credential, why string) error {
	s.mu.Lock()
	delete(s.signers, cred.ID)
	s.mu.Unlock()
	err := s.cfg.Keys.DestroyKey(ctx, cred.KeyURI)
	data := map[string]any{"key_label": cred.KeyLabel, "reason": why}
	kind := "remote.key.destroyed"
	if err != nil {
		kind = "remote.key.destroy-failed"
		data["error"] = err.Error()
	}
	if aerr := s.cfg.Store.Audit(ctx, s.event(kind, c, cred.ID, data)); aerr != nil && err == nil {
		err = aerr
	}
	if err != nil {
		return fmt.Errorf("%w: destroy: %w", ErrKey, err)
	}
	return nil
}

// user adapts a credential and its passkeys to webauthn.User. The WebAuthn user handle is the credential's
// UserHandle (random, no personal data).
type user struct {
	cred  Credential
	creds []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return []byte(u.cred.UserHandle) }
func (u *user) WebAuthnName() string                       { return u.cred.CouncilNumber }
func (u *user) WebAuthnDisplayName() string                { return u.cred.Name }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func (s *Service) loadUser(ctx context.Context, cred Credential) (*user, []Passkey, error) {
	pks, err := s.cfg.Store.Passkeys(ctx, cred.ID)
	if err != nil {
		return nil, nil, err
	}
	u := &user{cred: cred}
	for _, p := range pks {
		var wc webauthn.Credential
		if err := json.Unmarshal(p.Data, &wc); err != nil {
			return nil, nil, fmt.Errorf("remote: stored passkey: %w", err)
		}
		u.creds = append(u.creds, wc)
	}
	return u, pks, nil
}

// BeginPasskeyRegistration starts registering a new passkey for a pending or blocked credential: the
// in-person re-enrolment after a lost authenticator. Only an RA officer may.
func (s *Service) BeginPasskeyRegistration(ctx context.Context, c Caller, credID string) (Registration, error) {
	if c.Role != RoleRAOfficer {
		return Registration{}, s.refuse(ctx, "register", c, credID, nil, fmt.Errorf("%w: only an RA officer registers passkeys", ErrForbidden))
	}
	cred, err := s.cfg.Store.Credential(ctx, credID)
	if err != nil {
		return Registration{}, err
	}
	if cred.Status != StatusPending && cred.Status != StatusBlocked {
		return Registration{}, s.refuse(ctx, "register", c, credID, nil, fmt.Errorf("%w: %s", ErrCredentialStatus, cred.Status))
	}
	return s.beginRegistration(ctx, c, cred)
}

func (s *Service) beginRegistration(ctx context.Context, c Caller, cred Credential) (Registration, error) {
	code, err := s.newRegistrationCode()
	if err != nil {
		return Registration{}, err
	}
	u, _, err := s.loadUser(ctx, cred)
	if err != nil {
		return Registration{}, err
	}
	opts, err := s.registrationOptions(u)
	if err != nil {
		return Registration{}, err
	}
	ch := challengeRecord{ID: registrationID(code), Kind: kindRegister, CredentialID: cred.ID,
		Challenge: []byte(opts.Response.Challenge), ExpiresAt: s.now().Add(s.cfg.RegistrationTTL)}
	if err := s.cfg.Store.putChallenge(ctx, ch, s.event("remote.passkey.registration-started", c, cred.ID,
		map[string]any{"request": ch.ID, "expires": ch.ExpiresAt})); err != nil {
		return Registration{}, err
	}
	return Registration{ID: ch.ID, Code: code, Options: opts, ExpiresAt: ch.ExpiresAt}, nil
}

// registrationOptions are the WebAuthn creation options for u's new passkey, with a fresh challenge.
func (s *Service) registrationOptions(u *user) (*protocol.CredentialCreation, error) {
	opts, _, err := s.wa.BeginRegistration(u,
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			UserVerification: protocol.VerificationRequired, ResidentKey: protocol.ResidentKeyRequirementPreferred,
		}),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation),
		webauthn.WithCredentialParameters(passkeyParams))
	if err != nil {
		return nil, fmt.Errorf("remote: webauthn: %w", err)
	}
	return opts, nil
}

// FinishPasskeyRegistration checks the authenticator's attestation response (user verification required)
// and registers the passkey; the credential becomes active. Only an RA officer may (in person).
func (s *Service) FinishPasskeyRegistration(ctx context.Context, c Caller, credID, registrationID string, response []byte) error {
	if c.Role != RoleRAOfficer {
		return s.refuse(ctx, "register", c, credID, nil, fmt.Errorf("%w: only an RA officer registers passkeys", ErrForbidden))
	}
	ch, err := s.cfg.Store.takeChallenge(ctx, registrationID, kindRegister, s.now())
	if err != nil {
		return s.refuse(ctx, "register", c, credID, nil, err)
	}
	if ch.CredentialID != credID {
		return s.refuse(ctx, "register", c, credID, nil, fmt.Errorf("%w: registration of another credential", ErrNotFound))
	}
	return s.finishRegistration(ctx, c, ch, response)
}

// finishRegistration checks an attestation response against the used-up registration ceremony ch and
// registers the passkey.
func (s *Service) finishRegistration(ctx context.Context, c Caller, ch challengeRecord, response []byte) error {
	credID := ch.CredentialID
	if !s.now().Before(ch.ExpiresAt) {
		return s.refuse(ctx, "register", c, credID, nil, fmt.Errorf("%w: registration request", ErrExpired))
	}
	cred, err := s.cfg.Store.Credential(ctx, credID)
	if err != nil {
		return err
	}
	// A pending or blocked credential becomes active with its passkey; an active one (its national ID card
	// registered at enrolment, the enrolment's one-use code) gains the passkey as a second factor.
	if cred.Status != StatusPending && cred.Status != StatusBlocked && cred.Status != StatusActive {
		return s.refuse(ctx, "register", c, credID, nil, fmt.Errorf("%w: %s", ErrCredentialStatus, cred.Status))
	}
	u, _, err := s.loadUser(ctx, cred)
	if err != nil {
		return err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return s.refuse(ctx, "register", c, credID, nil, fmt.Errorf("%w: %v", ErrAssertion, err))
	}
	sd := webauthn.SessionData{Challenge: protocol.URLEncodedBase64(ch.Challenge).String(), RelyingPartyID: s.cfg.RPID,
		UserID: u.WebAuthnID(), UserVerification: protocol.VerificationRequired, CredParams: passkeyParams}
	wc, err := s.wa.CreateCredential(u, sd, parsed)
	if err != nil {
		return s.refuse(ctx, "register", c, credID, nil, fmt.Errorf("%w: %v", ErrAssertion, webauthnDetail(err)))
	}
	if !wc.Flags.UserVerified {
		return s.refuse(ctx, "register", c, credID, nil, fmt.Errorf("%w: the authenticator did not verify the user", ErrAssertion))
	}
	data, err := json.Marshal(wc)
	if err != nil {
		return err
	}
	pk := Passkey{CredentialID: credID, ID: wc.ID, Data: data, CreatedAt: s.now()}
	return s.cfg.Store.AddPasskey(ctx, pk, cred.Status != StatusActive, s.event("remote.passkey.registered", c, credID, map[string]any{
		"passkey_id": hex.EncodeToString(wc.ID), "attestation": wc.AttestationFormat, "aaguid": hex.EncodeToString(wc.Authenticator.AAGUID),
	}))
}

// passkeyParams are the passkey algorithms Mohr accepts: ES256 (COSE -7) and EdDSA (-8), both widely
// supported by platform authenticators and security keys.
var passkeyParams = []protocol.CredentialParameter{
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgES256},
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgEdDSA},
}

// webauthnDetail returns the library's developer detail for the audit log (never secret).
func webauthnDetail(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return strings.TrimSpace(pe.Details + " " + pe.DevInfo)
	}
	return err.Error()
}

// signerFor returns the HSM key of cred, opening it once.
func (s *Service) signerFor(ctx context.Context, cred Credential) (crypto.Signer, error) {
	s.mu.Lock()
	k, ok := s.signers[cred.ID]
	s.mu.Unlock()
	if ok {
		return k, nil
	}
	k, err := s.cfg.Keys.OpenSigner(ctx, cred.KeyURI)
	if err != nil {
		return nil, fmt.Errorf("%w: open: %w", ErrKey, err)
	}
	s.mu.Lock()
	s.signers[cred.ID] = k
	s.mu.Unlock()
	return k, nil
}

// sadHash is the stored form of a SAD.
func sadHash(sad string) string {
	h := sha256.Sum256([]byte(sad))
	return hex.EncodeToString(h[:])
}
