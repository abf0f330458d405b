package revocation

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// memStore is an in-memory ca.Store that follows the contract in ca/store.go.
type memStore struct {
	mu     sync.Mutex
	certs  map[string]ca.CertRecord
	events []audit.Event
	crlNum map[int]int64
	now    func() time.Time
}

var _ ca.Store = (*memStore)(nil)

func newMemStore(now func() time.Time) *memStore {
	return &memStore{certs: map[string]ca.CertRecord{}, crlNum: map[int]int64{}, now: now}
}

func (s *memStore) AddPending(_ context.Context, rec ca.CertRecord, ev audit.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.certs[rec.Serial]; ok {
		return ca.ErrDuplicateSerial
	}
	rec.Status = ca.StatusPending
	rec.CreatedAt, rec.UpdatedAt = s.now(), s.now()
	s.certs[rec.Serial] = rec
	s.events = append(s.events, ev)
	return nil
}

func (s *memStore) MarkIssued(_ context.Context, serial string, der []byte, ev audit.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.certs[serial]
	if !ok {
		return ca.ErrNotFound
	}
	if rec.Status != ca.StatusPending {
		return ca.ErrConflict
	}
	rec.Status, rec.DER, rec.UpdatedAt = ca.StatusIssued, der, s.now()
	s.certs[serial] = rec
	s.events = append(s.events, ev)
	return nil
}

func (s *memStore) MarkFailed(_ context.Context, serial string, ev audit.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.certs[serial]
	if !ok {
		return ca.ErrNotFound
	}
	if rec.Status != ca.StatusPending {
		return ca.ErrConflict
	}
	rec.Status = ca.StatusFailed
	s.certs[serial] = rec
	s.events = append(s.events, ev)
	return nil
}

func (s *memStore) Certificate(_ context.Context, serial string) (ca.CertRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.certs[serial]
	if !ok {
		return ca.CertRecord{}, fmt.Errorf("memstore %s: %w", serial, ca.ErrNotFound)
	}
	return rec, nil
}

func (s *memStore) Certificates(_ context.Context, f ca.CertFilter) ([]ca.CertRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.certs))
	for k := range s.certs {
		keys = append(keys, k)
	}
	// Ordered by serial as a number, like a store ordering fixed-width keys.
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) < len(keys[j])
		}
		return keys[i] < keys[j]
	})
	limit := f.Limit
	if limit == 0 {
		limit = 1000
	}
	var out []ca.CertRecord
	for _, k := range keys {
		if f.After != "" && (len(k) < len(f.After) || (len(k) == len(f.After) && k <= f.After)) {
			continue
		}
		rec := s.certs[k]
		if (f.Status != "" && rec.Status != f.Status) || (f.Profile != "" && rec.Profile != f.Profile) ||
			(f.Subject2 != "" && rec.Subject2 != f.Subject2) {
			continue
		}
		out = append(out, rec)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

func (s *memStore) Revoke(_ context.Context, serial string, reason int, at time.Time, ev audit.Event) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.certs[serial]
	if !ok {
		return false, ca.ErrNotFound
	}
	switch rec.Status {
	case ca.StatusIssued, ca.StatusHeld:
	case ca.StatusRevoked:
		if rec.RevocationReason == reason {
			return false, nil
		}
		return false, ca.ErrConflict
	default:
		return false, ca.ErrConflict
	}
	if rec.Status == ca.StatusHeld && reason == int(CertificateHold) {
		return false, nil
	}
	rec.Status = ca.StatusRevoked
	if reason == int(CertificateHold) {
		rec.Status = ca.StatusHeld
	}
	rec.RevocationReason, rec.RevokedAt, rec.UpdatedAt = reason, at, s.now()
	s.certs[serial] = rec
	s.events = append(s.events, ev)
	return true, nil
}

func (s *memStore) Release(_ context.Context, serial string, ev audit.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.certs[serial]
	if !ok {
		return ca.ErrNotFound
	}
	if rec.Status != ca.StatusHeld {
		return ca.ErrConflict
	}
	rec.Status, rec.RevocationReason, rec.RevokedAt, rec.UpdatedAt = ca.StatusIssued, 0, time.Time{}, s.now()
	s.certs[serial] = rec
	s.events = append(s.events, ev)
	return nil
}

func (s *memStore) RevokedInShard(_ context.Context, shard int, notAfter time.Time) ([]ca.RevokedEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ca.RevokedEntry
	for _, rec := range s.certs {
		if rec.Shard == shard && (rec.Status == ca.StatusRevoked || rec.Status == ca.StatusHeld) && rec.NotAfter.After(notAfter) {
			out = append(out, ca.RevokedEntry{Serial: rec.Serial, RevokedAt: rec.RevokedAt, Reason: rec.RevocationReason})
		}
	}
	return out, nil
}

func (s *memStore) NextCRLNumber(_ context.Context, shard int) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crlNum[shard]++
	return s.crlNum[shard], nil
}

func (s *memStore) AppendAudit(_ context.Context, ev audit.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, ev)
	return nil
}

func (s *memStore) eventKinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		out = append(out, e.Kind)
	}
	return out
}

// clock is a settable clock for tests.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock    { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// countingSigner counts signatures, to show that serving from the cache signs nothing.
type countingSigner struct {
	crypto.Signer
	n atomic.Int64
}

func (c *countingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, d, o)
}

// testPKI is a root, an intermediate (the issuing CA), and a store with leaves.
type testPKI struct {
	root, inter *x509.Certificate
	rootKey     *ecdsa.PrivateKey
	issuer      *ca.Issuer
	store       *memStore
	clock       *clock
	shards      int
	crlBase     string
	ocspURL     string
}

var testEpoch = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randSerial(t testing.TB) *big.Int {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[0] = b[0]&0x7f | 0x01
	return new(big.Int).SetBytes(b)
}

func mustCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newTestPKI builds root -> intermediate with crypto/x509; now is the pinned clock's start.
func newTestPKI(t testing.TB, now time.Time, shards int) *testPKI {
	t.Helper()
	rootKey, interKey := newKey(t), newKey(t)
	rootTmpl := &x509.Certificate{
		SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: "Mohr Test Root", Organization: []string{"Mohr"}, Country: []string{"IR"}},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	root := mustCert(t, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	inter := mustCert(t, &x509.Certificate{
		SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: "Mohr Test Health Intermediate CA", Organization: []string{"Mohr"}, Country: []string{"IR"}},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
		MaxPathLen: 0, MaxPathLenZero: true,
	}, root, &interKey.PublicKey, rootKey)
	c := newClock(now)
	return &testPKI{
		root: root, inter: inter, rootKey: rootKey,
		issuer:  &ca.Issuer{Cert: inter, Signer: interKey, Chain: []*x509.Certificate{inter, root}},
		store:   newMemStore(c.Now),
		clock:   c,
		shards:  shards,
		crlBase: "http://crl.mohr.test/intermediate",
		ocspURL: "http://ocsp.mohr.test/",
	}
}

// leaf issues a leaf under the intermediate with its shard's CRL DP and the OCSP URL. With record, it is
// recorded in the store as issued.
func (p *testPKI) leaf(t testing.TB, record bool) (*x509.Certificate, string) {
	t.Helper()
	serial := randSerial(t)
	shard := ca.ShardFor(serial, p.shards)
	k := newKey(t)
	now := p.clock.Now()
	cert := mustCert(t, &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "Dr. Test " + serial.Text(16)[:6], SerialNumber: "IDCIR-0499370899"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CRLDistributionPoints: []string{ca.CRLURL(p.crlBase, shard)}, OCSPServer: []string{p.ocspURL},
	}, p.inter, &k.PublicKey, p.issuer.Signer)
	hexSerial := ca.SerialHex(serial)
	if record {
		p.record(t, cert, ca.StatusIssued)
	}
	return cert, hexSerial
}

// record puts cert in the store with status issued, pending or failed.
func (p *testPKI) record(t testing.TB, cert *x509.Certificate, st ca.Status) {
	t.Helper()
	ctx := context.Background()
	s := ca.SerialHex(cert.SerialNumber)
	rec := ca.CertRecord{Serial: s, Profile: "physician-auth", Subject: cert.Subject.String(), NotBefore: cert.NotBefore,
		NotAfter: cert.NotAfter, Shard: ca.ShardFor(cert.SerialNumber, p.shards)}
	if err := p.store.AddPending(ctx, rec, audit.Event{Kind: "cert.intent", Actor: "test", Subject: s}); err != nil {
		t.Fatal(err)
	}
	var err error
	switch st {
	case ca.StatusIssued:
		err = p.store.MarkIssued(ctx, s, cert.Raw, audit.Event{Kind: "cert.issued", Actor: "test", Subject: s})
	case ca.StatusFailed:
		err = p.store.MarkFailed(ctx, s, audit.Event{Kind: "cert.failed", Actor: "test", Subject: s})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func writePEM(t testing.TB, dir, name string, certs ...*x509.Certificate) string {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// issueFunc issues responder certificates for key through the ca package's pipeline, the one issuance pipeline.
func (p *testPKI) issueFunc(t testing.TB, st ca.Store, key crypto.Signer) IssueFunc {
	t.Helper()
	c, err := ca.New(p.issuer, st, ca.DefaultConfig(), ca.Options{Now: p.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if cs, ok := key.(*countingSigner); ok {
		key = cs.Signer // the CSR's proof of possession is not a responder signature
	}
	return func(ctx context.Context, _ crypto.PublicKey, _, notAfter time.Time) (*x509.Certificate, error) {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if err != nil {
			return nil, err
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return nil, err
		}
		return c.Issue(ctx, ca.Request{Profile: ca.ProfileOCSPResponder, CSR: csr, CommonName: "Mohr Test OCSP Responder",
			ValidUntil: notAfter, Actor: "system:test"})
	}
}
