package api

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/http"
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
