// Package tokentest gives tests of tokens and adapter a small CA: a development root and intermediate that
// implement tokens.CertIssuer (the facility-adapter profile) and tokens.Revoker, with an OCSP responder
// (RFC 6960) that follows the revocations. It is for tests only; package ca is the real issuer.
package tokentest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/tokens"
)

// CA is a root and an intermediate in memory.
type CA struct {
	Root, Intermediate       *x509.Certificate
	RootKey, IntermediateKey *ecdsa.PrivateKey
	// Clock gives "now" for issuance and OCSP; nil means time.Now.
	Clock func() time.Time
	// Lifetime of adapter certificates (capped by the facility's limit); zero means 30 days.
	Lifetime time.Duration
	// OCSPURL is written into issued certificates' AIA when set.
	OCSPURL string
	// OCSPValidity is the span thisUpdate..nextUpdate of OCSP responses; zero means 1 hour.
	OCSPValidity time.Duration

	mu      sync.Mutex
	issued  map[string]*x509.Certificate
	revoked map[string]revocation
	serial  int64
	// Calls counts IssueAdapter calls.
	Calls int
	// Fail, when set, makes IssueAdapter fail (CA outage).
	Fail error
}

type revocation struct {
	at     time.Time
	reason int
}

var (
	_ tokens.CertIssuer = (*CA)(nil)
	_ tokens.Revoker    = (*CA)(nil)
)

// New returns a CA whose certificates are valid from now-1h for ten years.
func New(name string, now time.Time) (*CA, error) {
	rk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ik, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	rootT := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootT, rootT, &rk.PublicKey, rk)
	if err != nil {
		return nil, err
	}
	root, _ := x509.ParseCertificate(rootDER)
	intT := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name + " Health Intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
		MaxPathLenZero: true,
	}
	intDER, err := x509.CreateCertificate(rand.Reader, intT, root, &ik.PublicKey, rk)
	if err != nil {
		return nil, err
	}
	inter, _ := x509.ParseCertificate(intDER)
	return &CA{Root: root, Intermediate: inter, RootKey: rk, IntermediateKey: ik,
		issued: map[string]*x509.Certificate{}, revoked: map[string]revocation{}, serial: 0x1000}, nil
}

func (ca *CA) now() time.Time {
	if ca.Clock != nil {
		return ca.Clock()
	}
	return time.Now()
}

// Pool returns a pool holding the root.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root)
	return p
}

// IssueAdapter issues a facility-adapter certificate: clientAuth, subject serialNumber = SIAM ID, the facility
// extension, NotAfter capped by f.NotAfterLimit().
func (ca *CA) IssueAdapter(ctx context.Context, csr *x509.CertificateRequest, f tokens.Facility) (*x509.Certificate, []*x509.Certificate, error) {
	ca.mu.Lock()
	ca.Calls++
	fail := ca.Fail
	ca.serial++
	serial := big.NewInt(ca.serial)
	ca.mu.Unlock()
	if fail != nil {
		return nil, nil, fail
	}
	return ca.IssueWith(csr.PublicKey, serial, f, nil)
}

// IssueWith signs a facility-adapter certificate for pub; edit, when not nil, changes the template first (to
// make wrong profiles in tests).
func (ca *CA) IssueWith(pub crypto.PublicKey, serial *big.Int, f tokens.Facility, edit func(*x509.Certificate)) (*x509.Certificate, []*x509.Certificate, error) {
	now := ca.now()
	life := ca.Lifetime
	if life == 0 {
		life = 30 * 24 * time.Hour
	}
	notAfter := now.Add(life)
	if lim := f.NotAfterLimit(); !lim.IsZero() && notAfter.After(lim) {
		notAfter = lim
	}
	ext, err := hixext.Facility{SIAMID: f.SIAMID, LicenceNumber: f.LicenceNumber, SystemCertID: f.SystemID}.Extension()
	if err != nil {
		return nil, nil, err
	}
	t := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: f.Name, SerialNumber: f.SIAMID, Country: []string{"IR"}},
		NotBefore:    now.Add(-time.Minute), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{ext},
	}
	if ca.OCSPURL != "" {
		t.OCSPServer = []string{ca.OCSPURL}
	}
	if edit != nil {
		edit(t)
	}
	der, err := x509.CreateCertificate(rand.Reader, t, ca.Intermediate, pub, ca.IntermediateKey)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	ca.mu.Lock()
	ca.issued[fmt.Sprintf("%x", c.SerialNumber)] = c
	ca.mu.Unlock()
	return c, []*x509.Certificate{ca.Intermediate}, nil
}

// Revoke implements tokens.Revoker.
func (ca *CA) Revoke(ctx context.Context, serial string, reason int, actor string) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if _, ok := ca.issued[serial]; !ok {
		return errors.New("tokentest: unknown serial")
	}
	ca.revoked[serial] = revocation{at: ca.now(), reason: reason}
	return nil
}

// Hold implements tokens.Revoker.
func (ca *CA) Hold(ctx context.Context, serial string, actor string) error {
	return ca.Revoke(ctx, serial, tokens.ReasonCodeCertificateHold, actor)
}

// Release implements tokens.Revoker.
func (ca *CA) Release(ctx context.Context, serial string, actor string) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	r, ok := ca.revoked[serial]
	if !ok || r.reason != tokens.ReasonCodeCertificateHold {
		return errors.New("tokentest: not on hold")
	}
	delete(ca.revoked, serial)
	return nil
}

// Status returns the revocation reason of serial and whether it is revoked or held.
func (ca *CA) Status(serial string) (reason int, revoked bool) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	r, ok := ca.revoked[serial]
	return r.reason, ok
}

// OCSPHandler answers RFC 6960 requests (POST, or GET with the base64 request in the path) for certificates
// of the intermediate, signed by the intermediate itself.
func (ca *CA) OCSPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 10000))
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			w.Header().Set("Content-Type", "application/ocsp-response")
			w.Write(ocsp.MalformedRequestErrorResponse)
			return
		}
		key := fmt.Sprintf("%x", req.SerialNumber)
		now := ca.now()
		validity := ca.OCSPValidity
		if validity == 0 {
			validity = time.Hour
		}
		tmpl := ocsp.Response{SerialNumber: req.SerialNumber, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(validity), Status: ocsp.Good}
		ca.mu.Lock()
		_, known := ca.issued[key]
		if rv, ok := ca.revoked[key]; ok {
			tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, rv.at, rv.reason
		} else if !known {
			tmpl.Status = ocsp.Unknown
		}
		ca.mu.Unlock()
		resp, err := ocsp.CreateResponse(ca.Intermediate, ca.Intermediate, tmpl, ca.IntermediateKey)
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(resp)
	})
}

// Facility returns a facility in good standing from now-1 day for one year.
func Facility(siam string, now time.Time) tokens.Facility {
	return tokens.Facility{
		SIAMID: siam, Name: "Facility " + siam, LicenceNumber: "LIC-" + siam, LicenceStatus: tokens.StatusActive,
		LicenceFrom: now.AddDate(0, 0, -1).Truncate(time.Second).UTC(), LicenceUntil: now.AddDate(1, 0, 0).Truncate(time.Second).UTC(),
		SystemID: "SYS-" + siam, SystemStatus: tokens.StatusActive,
		SystemFrom: now.AddDate(0, 0, -1).Truncate(time.Second).UTC(), SystemUntil: now.AddDate(1, 0, 0).Truncate(time.Second).UTC(),
	}
}

// Clock is a settable clock safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
