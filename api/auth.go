package api

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/http"
	"slices"
)

var (
	// errBadCredential: a credential was presented and did not verify (wrong CA, expired, revoked, no role,
	// wrong bearer secret, bearer from a non-loopback peer).
	errBadCredential = errors.New("api: credential not accepted")
	// errRevocationUnknown: the revocation checker failed; api fails closed.
	errRevocationUnknown = &requestError{probUnavailable, "the revocation status of the client certificate cannot be checked"}
)

// authenticate returns the caller's identity, nil with a nil error when the request carries no credential, or
// an error when it carries one that is not accepted.
//
// A client certificate must chain directly to a certificate in Config.ClientCAs (the intermediate; the
// intermediates a client sends are ignored, so no other path is ever built), be valid at Config.Now, allow
// clientAuth, map to exactly one role (RoleFromCertificate) and not be revoked. An Authorization header takes
// precedence over a certificate: it must hold the admin bearer secret and come from a loopback peer.
func (s *Server) authenticate(r *http.Request) (*Identity, error) {
	if tok, present := bearer(r); present {
		if s.admin == nil || tok == "" || !isLoopback(r) || !s.admin.matches(tok) {
			return nil, errBadCredential
		}
		return &Identity{Role: RoleOperator, Subject: "admin:local"}, nil
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, nil
	}
	leaf := r.TLS.PeerCertificates[0]
	now := s.cfg.Now()
	key := sha256.Sum256(leaf.Raw)
	id, ok := s.verified.get(key, now)
	if !ok {
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:       s.cfg.ClientCAs,
			CurrentTime: now,
			KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			return nil, errBadCredential
		}
		if err := apiCredential(leaf); err != nil {
			return nil, errBadCredential
		}
		if id, err = RoleFromCertificate(leaf); err != nil {
			return nil, errBadCredential
		}
		s.verified.put(key, id, now)
	}
	if s.svc.Revocation != nil {
		revoked, err := s.svc.Revocation.Revoked(r.Context(), leaf)
		if err != nil {
			return nil, errRevocationUnknown
		}
		if revoked {
			return nil, errBadCredential
		}
	}
	return &id, nil
}

// apiCredential checks that a client certificate was issued under a profile meant for API access (facility-adapter,
// physician-auth, organisation-auth, operator), as adapter/gateway checks the facility-adapter profile:
//
//   - the extended key usage names id-kp-clientAuth explicitly (RFC 5280 §4.2.1.12). Go's path validation
//     accepts a certificate without the extension for any purpose; a physician's non-repudiation certificate
//     or an organisation seal has none and must not log in;
//   - the key usage allows digitalSignature (the TLS handshake signature) and not contentCommitment: a
//     signing key never doubles as an authentication key, since a key that answers TLS handshakes signs
//     whatever a server hands it (ETSI EN 319 412-2 §4.3.2);
//   - it is not a CA certificate.
func apiCredential(leaf *x509.Certificate) error {
	switch {
	case !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth):
		return errors.New("api: no clientAuth extended key usage")
	case leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return errors.New("api: no digitalSignature key usage")
	case leaf.KeyUsage&x509.KeyUsageContentCommitment != 0:
		return errors.New("api: a signing (contentCommitment) key is not an API credential")
	case leaf.IsCA:
		return errors.New("api: CA certificate")
	}
	return nil
}
