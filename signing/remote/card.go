package remote

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/internal/ids"
)

// The national ID card as a signature activation factor, the alternative to a passkey (issue 18).
//
// The card's authentication key (docs/cards.md, profile national-id, key '81') is "PIN always": the card
// answers INTERNAL AUTHENTICATE (ISO/IEC 7816-4 §7.5.2) only right after a VERIFY with the holder's PIN,
// so an answer proves possession of the card and knowledge of its PIN, checked by the card itself (the PIN
// never reaches Mohr). The card signs SHA-256 of a challenge Mohr computed; its answer is the plain ECDSA
// signature r||s (BSI TR-03111 §5.2.1). Mohr checks it with the card certificate registered for the
// credential, and re-checks that certificate (validity by the injected clock, chain to the configured
// national ID card issuers, the credential's national code) at every use: the check fails closed.
//
// Registration is the RA officer's job, in person, over a challenge Mohr issued (BeginCardChallenge): one
// use, short-lived, bound to the officer who asked and to its purpose (a credential's card registration,
// or an enrolment), stored in the database so any node can redeem it once.

// Card is a national ID card registered as an activation factor of a credential.
type Card struct {
	CredentialID string
	// Fingerprint is the SHA-256 of the card certificate (DER), hex: the card's identity here.
	Fingerprint string
	// Certificate is the card's authentication certificate, DER.
	Certificate  []byte
	Serial       string // hex
	Issuer       string
	NationalCode string
	NotAfter     time.Time
	CreatedAt    time.Time
}

// Factor kinds, as the audit log and credentials/info name them.
const (
	FactorPasskey = "passkey"
	FactorCard    = "national-id-card"
)

// CardPurpose says what a card challenge is for.
type CardPurpose string

// The purposes of a card challenge.
const (
	// PurposeRegister: register a card as an activation factor of an existing credential.
	PurposeRegister CardPurpose = "register"
	// PurposeEnrol: the identity check at enrolment (the card is registered with the new credential).
	PurposeEnrol CardPurpose = "enrol"
)

// cardChallengeLabel separates card registration challenges from activation challenges and every other use.
const cardChallengeLabel = "MOHR-CARD-CHALLENGE-v1\x00"

// CardChallenge is a server-issued challenge for the national ID card to sign (through INTERNAL
// AUTHENTICATE, after its PIN), redeemable once by the RA officer who asked, until ExpiresAt.
type CardChallenge struct {
	ID        string
	Purpose   CardPurpose
	Challenge []byte
	ExpiresAt time.Time
}

// cardChallengeRecord is a stored CardChallenge with whom and what it is bound to.
type cardChallengeRecord struct {
	ID           string
	Purpose      CardPurpose
	CredentialID string // PurposeRegister only
	Actor        string
	Challenge    []byte
	ExpiresAt    time.Time
}

// cardChallenge computes a card challenge: SHA-256 over a label, the purpose, the credential (or empty),
// the RA officer and the nonce, each length-prefixed.
func cardChallenge(purpose CardPurpose, credID, actor string, nonce []byte) []byte {
	h := sha256.New()
	h.Write([]byte(cardChallengeLabel))
	var n [4]byte
	for _, b := range [][]byte{[]byte(purpose), []byte(credID), []byte(actor), nonce} {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return h.Sum(nil)
}

// CardChallengeTTL is how long a card challenge lives: the RA officer's client has the card sign it at once.
const CardChallengeTTL = 2 * time.Minute

// BeginCardChallenge issues a challenge for the physician's national ID card to sign at the RA desk: for
// PurposeEnrol (credID empty) or PurposeRegister (credID the credential to add the card to). Only an RA
// officer may ask; the challenge is bound to that officer (Caller.Actor).
func (s *Service) BeginCardChallenge(ctx context.Context, c Caller, purpose CardPurpose, credID string) (CardChallenge, error) {
	op := "card-challenge"
	if c.Role != RoleRAOfficer || c.Actor == "" {
		return CardChallenge{}, s.refuse(ctx, op, c, credID, nil, fmt.Errorf("%w: only an RA officer checks a national ID card", ErrForbidden))
	}
	switch purpose {
	case PurposeEnrol:
		if credID != "" {
			return CardChallenge{}, fmt.Errorf("%w: an enrolment challenge names no credential", ErrBadRequest)
		}
	case PurposeRegister:
		if _, err := s.cfg.Store.Credential(ctx, credID); err != nil {
			return CardChallenge{}, err
		}
	default:
		return CardChallenge{}, fmt.Errorf("%w: card challenge purpose %q", ErrBadRequest, purpose)
	}
	if len(s.cfg.CardIssuers) == 0 {
		return CardChallenge{}, s.refuse(ctx, op, c, credID, nil, fmt.Errorf("%w: no national ID card issuers configured", ErrCardRefused))
	}
	nonce, err := s.random(32)
	if err != nil {
		return CardChallenge{}, err
	}
	rec := cardChallengeRecord{ID: hex.EncodeToString(nonce), Purpose: purpose, CredentialID: credID, Actor: c.Actor,
		Challenge: cardChallenge(purpose, credID, c.Actor, nonce), ExpiresAt: s.now().Add(CardChallengeTTL)}
	if err := s.cfg.Store.putCardChallenge(ctx, rec, s.event("remote.card.challenge", c, credID, map[string]any{
		"challenge_id": rec.ID, "purpose": string(purpose), "expires": rec.ExpiresAt,
	})); err != nil {
		return CardChallenge{}, err
	}
	return CardChallenge{ID: rec.ID, Purpose: purpose, Challenge: rec.Challenge, ExpiresAt: rec.ExpiresAt}, nil
}

// CardAnswer is the national ID card's answer to a challenge: its authentication certificate (DER) and its
// INTERNAL AUTHENTICATE answer, the plain ECDSA signature r||s over SHA-256 of the challenge.
type CardAnswer struct {
	Certificate []byte
	Signature   []byte
}

// redeemCardChallenge uses up challenge id (one use, across nodes) and checks it is unexpired, for purpose
// and credID, and asked by c.
func (s *Service) redeemCardChallenge(ctx context.Context, c Caller, id string, purpose CardPurpose, credID string) (cardChallengeRecord, error) {
	if _, err := hex.DecodeString(id); err != nil || len(id) != 64 {
		return cardChallengeRecord{}, fmt.Errorf("%w: card challenge", ErrNotFound)
	}
	now := s.now()
	rec, err := s.cfg.Store.takeCardChallenge(ctx, id, now)
	if err != nil {
		return rec, err
	}
	if rec.Purpose != purpose || rec.CredentialID != credID || rec.Actor != c.Actor {
		return rec, fmt.Errorf("%w: card challenge issued for another purpose, credential or RA officer", ErrCardRefused)
	}
	if !now.Before(rec.ExpiresAt) {
		return rec, fmt.Errorf("%w: card challenge", ErrExpired)
	}
	nonce, _ := hex.DecodeString(rec.ID)
	if want := cardChallenge(rec.Purpose, rec.CredentialID, rec.Actor, nonce); !bytes.Equal(want, rec.Challenge) {
		return rec, fmt.Errorf("%w: stored card challenge does not match", ErrCardRefused)
	}
	return rec, nil
}

// CheckedCard is a national ID card whose answer Mohr verified: its certificate and whose it is.
type CheckedCard struct {
	Cert         *x509.Certificate
	NationalCode string
	Fingerprint  string
}

// Evidence is the check as an audit event records it (the certificate is public; no PIN was ever here).
func (k CheckedCard) Evidence() map[string]any {
	return map[string]any{
		"method":                  "national ID card: certificate chained to the configured card issuers, INTERNAL AUTHENTICATE (after the card's PIN) over a server-issued challenge verified by the exchange",
		"card_national_code":      k.NationalCode,
		"card_cert_sha256":        k.Fingerprint,
		"card_cert_serial":        k.Cert.SerialNumber.Text(16),
		"card_cert_issuer":        k.Cert.Issuer.String(),
		"card_cert_subject":       k.Cert.Subject.String(),
		"card_cert_not_after":     k.Cert.NotAfter.UTC(),
		"card_verified_by_server": true,
	}
}

// checkCardAnswer verifies a card's answer over challenge: the certificate parses, is within its validity
// at the service's clock, chains to the configured issuers at that time, is not revoked (Config.CardCRLs),
// holds an ECDSA P-256 key allowed to sign (key usage) and names a well-formed national code (subject serialNumber "IDCIR-<code>", ETSI EN 319 412-1), and the signature
// verifies over SHA-256(challenge). Errors wrap ErrCardRefused (or ErrExpired for an expired certificate).
func (s *Service) checkCardAnswer(ctx context.Context, ans CardAnswer, challenge []byte) (CheckedCard, error) {
	cert, err := s.checkCardCertificate(ans.Certificate)
	if err != nil {
		return CheckedCard{}, err
	}
	if err := s.checkCardRevocation(ctx, cert); err != nil {
		return CheckedCard{}, err
	}
	nc, err := nationalCodeOf(cert)
	if err != nil {
		return CheckedCard{}, err
	}
	if err := verifyCardSignature(cert.PublicKey.(*ecdsa.PublicKey), challenge, ans.Signature); err != nil {
		return CheckedCard{}, err
	}
	sum := sha256.Sum256(cert.Raw)
	return CheckedCard{Cert: cert, NationalCode: nc, Fingerprint: hex.EncodeToString(sum[:])}, nil
}

// checkCardCertificate parses der and checks its validity period and chain now (fail closed: without
// configured issuers nothing passes).
func (s *Service) checkCardCertificate(der []byte) (*x509.Certificate, error) {
	if len(der) == 0 || len(der) > maxCardCert {
		return nil, fmt.Errorf("%w: card certificate missing or too large", ErrCardRefused)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: card certificate: %v", ErrCardRefused, err)
	}
	now := s.now()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("%w: %w: card certificate valid %s to %s", ErrCardRefused, ErrExpired,
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(s.cfg.CardIssuers) == 0 {
		return nil, fmt.Errorf("%w: no national ID card issuers configured", ErrCardRefused)
	}
	roots := x509.NewCertPool()
	for _, c := range s.cfg.CardIssuers {
		roots.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%w: card certificate does not chain to the configured national ID card issuers: %v", ErrCardRefused, err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: card key is not ECDSA P-256", ErrCardRefused)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("%w: the card certificate's key usage does not allow authentication (digitalSignature)", ErrCardRefused)
	}
	return cert, nil
}

// maxCardCert bounds the certificate a client may send (a card EF holds far less).
const maxCardCert = 8 << 10

// nationalCodeOf returns the national code in a card certificate's subject serialNumber ("IDCIR-<code>").
func nationalCodeOf(cert *x509.Certificate) (string, error) {
	sn, ok := strings.CutPrefix(cert.Subject.SerialNumber, "IDCIR-")
	if !ok {
		return "", fmt.Errorf("%w: card certificate names no national code", ErrCardRefused)
	}
	nc, err := ids.NationalCode(sn)
	if err != nil {
		return "", fmt.Errorf("%w: card certificate: %v", ErrCardRefused, err)
	}
	return nc, nil
}

// verifyCardSignature checks a card's INTERNAL AUTHENTICATE answer: exactly 2×32 bytes r||s (BSI TR-03111
// §5.2.1 plain format, P-256), an ECDSA signature over SHA-256(challenge). The ecdsa package refuses r or s
// outside [1, n-1]. Written here (not taken from package cardreader) because the exchange verifies what a
// client sent and must not depend on the card-reading code.
func verifyCardSignature(pub *ecdsa.PublicKey, challenge, sig []byte) error {
	if len(sig) != 64 {
		return fmt.Errorf("%w: card signature of %d bytes, want 64 (r||s)", ErrCardRefused, len(sig))
	}
	r := new(big.Int).SetBytes(sig[:32])
	sv := new(big.Int).SetBytes(sig[32:])
	h := sha256.Sum256(challenge)
	if !ecdsa.Verify(pub, h[:], r, sv) {
		return fmt.Errorf("%w: card signature does not verify", ErrCardRefused)
	}
	return nil
}

// RegisterCard registers the national ID card that answered challenge challengeID as an activation factor
// of credential credID. Only the RA officer who asked for the challenge, in person: the card must be the
// credential's physician's (national code), genuine (chain to the configured issuers, valid now) and have
// signed the challenge after its PIN. A pending or blocked credential becomes active (as with a passkey).
func (s *Service) RegisterCard(ctx context.Context, c Caller, credID, challengeID string, ans CardAnswer) (Card, error) {
	const op = "card-register"
	if c.Role != RoleRAOfficer {
		return Card{}, s.refuse(ctx, op, c, credID, nil, fmt.Errorf("%w: only an RA officer registers a card", ErrForbidden))
	}
	rec, err := s.redeemCardChallenge(ctx, c, challengeID, PurposeRegister, credID)
	if err != nil {
		return Card{}, s.refuse(ctx, op, c, credID, nil, err)
	}
	cred, err := s.cfg.Store.Credential(ctx, credID)
	if err != nil {
		return Card{}, err
	}
	if cred.Status == StatusRevoked {
		return Card{}, s.refuse(ctx, op, c, credID, nil, fmt.Errorf("%w: %s", ErrCredentialStatus, cred.Status))
	}
	k, err := s.checkCardAnswer(ctx, ans, rec.Challenge)
	if err != nil {
		return Card{}, s.refuse(ctx, op, c, credID, nil, err)
	}
	if k.NationalCode != cred.NationalCode {
		return Card{}, s.refuse(ctx, op, c, credID, nil, fmt.Errorf("%w: the card is not the credential holder's (national code)", ErrCardRefused))
	}
	card := newCard(cred.ID, k, s.now())
	ev := k.Evidence()
	ev["challenge_id"] = rec.ID
	activate := cred.Status == StatusPending || cred.Status == StatusBlocked
	if err := s.cfg.Store.AddCard(ctx, card, activate, s.event("remote.card.registered", c, cred.ID, ev)); err != nil {
		return Card{}, s.refuse(ctx, op, c, credID, nil, err)
	}
	return card, nil
}

func newCard(credID string, k CheckedCard, now time.Time) Card {
	return Card{CredentialID: credID, Fingerprint: k.Fingerprint, Certificate: k.Cert.Raw, Serial: k.Cert.SerialNumber.Text(16),
		Issuer: k.Cert.Issuer.String(), NationalCode: k.NationalCode, NotAfter: k.Cert.NotAfter.UTC(), CreatedAt: now}
}

// ActivateWithCard is Activate with the national ID card as the factor: ans is the card's answer to the
// activation request's challenge (Challenge(credID, nonce, hashes), the same a passkey signs). The request
// is used up whatever the outcome. Checks: the request is unexpired and the credential's; the credential
// active and the caller's; the card certificate is one registered for this credential, still valid by the
// service's clock, still chaining to the configured issuers, of the credential's national code; the card's
// signature verifies over the challenge recomputed from the stored hashes. Then the SAD is issued exactly as
// for a passkey, and the grant's audit event names the factor and the card.
func (s *Service) ActivateWithCard(ctx context.Context, c Caller, credID, requestID string, ans CardAnswer) (Activation, error) {
	now := s.now()
	ch, err := s.cfg.Store.takeChallenge(ctx, requestID, kindActivate, now)
	if err != nil {
		return Activation{}, s.refuse(ctx, "activate-card", c, credID, ch.Hashes, err)
	}
	fail := func(err error) (Activation, error) {
		return Activation{}, s.refuse(ctx, "activate-card", c, credID, ch.Hashes, err)
	}
	if ch.CredentialID != credID {
		return fail(fmt.Errorf("%w: activation request of another credential", ErrNotFound))
	}
	if !now.Before(ch.ExpiresAt) {
		return fail(fmt.Errorf("%w: activation request", ErrExpired))
	}
	cred, err := s.usable(ctx, c, credID)
	if err != nil {
		return fail(err)
	}
	nonce, _ := hex.DecodeString(ch.ID)
	want := Challenge(cred.ID, nonce, ch.Hashes)
	if !bytes.Equal(want, ch.Challenge) {
		return fail(fmt.Errorf("%w: stored challenge does not match its hashes", ErrCardRefused))
	}
	sum := sha256.Sum256(ans.Certificate)
	fp := hex.EncodeToString(sum[:])
	cards, err := s.cfg.Store.Cards(ctx, cred.ID)
	if err != nil {
		return Activation{}, err
	}
	registered := false
	for _, k := range cards {
		registered = registered || k.Fingerprint == fp
	}
	if !registered {
		return fail(fmt.Errorf("%w: the card is not registered for this credential", ErrCardRefused))
	}
	k, err := s.checkCardAnswer(ctx, ans, want)
	if err != nil {
		return fail(err)
	}
	if k.NationalCode != cred.NationalCode {
		return fail(fmt.Errorf("%w: the card is not the credential holder's (national code)", ErrCardRefused))
	}
	return s.grant(ctx, c, cred, ch, map[string]any{"factor": FactorCard, "card_cert_sha256": k.Fingerprint,
		"card_cert_serial": k.Cert.SerialNumber.Text(16), "card_cert_issuer": k.Cert.Issuer.String()})
}

// Factors returns the activation factors registered for a credential: its passkeys' IDs and its cards. The
// physician sees their own; staff and auditors any.
func (s *Service) Factors(ctx context.Context, c Caller, credID string) (passkeys [][]byte, cards []Card, err error) {
	cred, err := s.cfg.Store.Credential(ctx, credID)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case c.Role == RolePhysician && c.CouncilNumber != "" && c.CouncilNumber == cred.CouncilNumber:
	case c.Role == RoleRAOfficer || c.Role == RoleOperator || c.Role == RoleAuditor:
	default:
		return nil, nil, fmt.Errorf("%w: credential", ErrNotFound)
	}
	pks, err := s.cfg.Store.Passkeys(ctx, credID)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range pks {
		passkeys = append(passkeys, p.ID)
	}
	cards, err = s.cfg.Store.Cards(ctx, credID)
	return passkeys, cards, err
}

// ErrCardRefused: a national ID card answer does not hold (signature, certificate chain, validity, national
// code, not registered, challenge of another purpose or officer).
var ErrCardRefused = errors.New("remote: national ID card refused")

// enrolmentCard checks the national ID card of an enrolment: the challenge is an unexpired, unused
// enrolment challenge of this RA officer (used up now), the answer holds (chain, validity, signature over
// that challenge), and the card's national code is the one enrolled.
func (s *Service) enrolmentCard(ctx context.Context, c Caller, r EnrolRequest) (CheckedCard, error) {
	rec, err := s.redeemCardChallenge(ctx, c, r.Card.ChallengeID, PurposeEnrol, "")
	if err != nil {
		return CheckedCard{}, err
	}
	k, err := s.checkCardAnswer(ctx, r.Card.Answer, rec.Challenge)
	if err != nil {
		return CheckedCard{}, err
	}
	if k.NationalCode != r.NationalCode {
		return CheckedCard{}, fmt.Errorf("%w: the card's national code is not the one enrolled", ErrCardRefused)
	}
	return k, nil
}

// checkCardRevocation refuses a card certificate its issuer's CRL lists, and fails closed when CRLs are
// configured (Config.CardCRLs) but none of the certificate's issuer is current: found, signed by that
// issuer and not past its nextUpdate (RFC 5280 §6.3.3).
func (s *Service) checkCardRevocation(ctx context.Context, cert *x509.Certificate) error {
	if s.cfg.CardCRLs == nil {
		return nil
	}
	crls, err := s.cfg.CardCRLs(ctx)
	if err != nil {
		return fmt.Errorf("%w: card issuers' CRLs: %v", ErrCardRefused, err)
	}
	now := s.now()
	for _, iss := range s.cfg.CardIssuers {
		if !bytes.Equal(iss.RawSubject, cert.RawIssuer) {
			continue
		}
		for _, crl := range crls {
			if !bytes.Equal(crl.RawIssuer, iss.RawSubject) || crl.CheckSignatureFrom(iss) != nil {
				continue
			}
			if crl.NextUpdate.IsZero() || now.After(crl.NextUpdate) || now.Before(crl.ThisUpdate) {
				continue
			}
			for _, e := range crl.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
					return fmt.Errorf("%w: the card certificate is revoked (%s)", ErrCardRefused, e.RevocationTime.UTC().Format(time.RFC3339))
				}
			}
			return nil
		}
	}
	return fmt.Errorf("%w: no current CRL of the card certificate's issuer", ErrCardRefused)
}
