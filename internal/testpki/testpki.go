// Package testpki builds a small, complete HIX PKI in memory for tests in any package: a root, the "health
// intermediate CA" and end-entity certificates for each HIX profile (ARCHITECTURE.md "Certificate profiles"),
// with ECDSA P-256 keys, a controllable clock, revocation by serial and an OCSP responder (RFC 6960) that
// signs responses with a delegated responder certificate (id-kp-OCSPSigning, id-pkix-ocsp-nocheck).
//
// It is a normal package so that other packages' tests can import it; nothing in production imports it.
// Keys are generated fresh by New; nothing here is deterministic except what the Clock pins.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/internal/hixext"
)

// Clock is a settable clock; its Now method is what the packages under test take as their clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Profile names an end-entity certificate profile of the HIX PKI.
type Profile int

// The end-entity profiles of ARCHITECTURE.md.
const (
	// PhysicianSigning: keyUsage contentCommitment only; subject serialNumber "IDCIR-<national code>";
	// Common PKI admission extension with the medical-council number.
	PhysicianSigning Profile = iota + 1
	// OrganisationSeal: digitalSignature and contentCommitment.
	OrganisationSeal
	// TSA: digitalSignature; critical extendedKeyUsage timeStamping only (RFC 3161 §2.3).
	TSA
	// OCSPResponder: digitalSignature; extendedKeyUsage OCSPSigning; id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1).
	OCSPResponder
	// FacilityAdapter: digitalSignature; extendedKeyUsage clientAuth; hixext facility extension.
	FacilityAdapter
)

// LeafOptions are the subject data of an end-entity certificate. Zero times mean "from one hour before the
// clock's time, for one year".
type LeafOptions struct {
	CommonName    string
	NationalCode  string // PhysicianSigning: subject serialNumber IDCIR-<code>
	CouncilNumber string // PhysicianSigning: admission registration number
	Profession    string // PhysicianSigning: admission profession; default "Physician"
	SIAMID        string // FacilityAdapter
	Licence       string // FacilityAdapter
	NotBefore     time.Time
	NotAfter      time.Time
}

// Leaf is an end-entity certificate with its key and its chain (the leaf first, then the intermediate; the
// root is not included, as in a CMS SignedData).
type Leaf struct {
	Cert  *x509.Certificate
	Key   *ecdsa.PrivateKey
	Chain []*x509.Certificate
}

// Signer returns the leaf's key as a crypto.Signer.
func (l *Leaf) Signer() crypto.Signer { return l.Key }

// PKI is a root, an intermediate and an OCSP responder, with a revocation list kept in memory.
type PKI struct {
	Clock        *Clock
	Root         *x509.Certificate
	RootKey      *ecdsa.PrivateKey
	Intermediate *x509.Certificate
	InterKey     *ecdsa.PrivateKey
	// Responder is the delegated OCSP responder for certificates the intermediate issues.
	Responder *Leaf

	mu      sync.Mutex
	serial  int64
	revoked map[string]revocation // by serial, decimal
}

type revocation struct {
	at     time.Time
	reason int
}

// OIDPhysicianSigningPolicy is the certificate policy testpki puts in physician-signing certificates: the
// development OID of ca.DefaultConfig for that profile (hixext.OIDPolicyBase.3).
var OIDPhysicianSigningPolicy = asn1.ObjectIdentifier{2, 999, 1742, 2, 3}

// RootCRLURL is the CRL distribution point of the intermediate; RootCRL answers for it.
const RootCRLURL = "http://crl.testpki.invalid/root.crl"

var (
	oidEKUTimeStamping = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
	oidExtKeyUsage     = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidOCSPNoCheck     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}
)

// New builds a root ("Mohr Test Root"), an intermediate ("Mohr Test Health Intermediate CA", pathLen 0) and a
// delegated OCSP responder, with the clock at now. The CA certificates are valid from ten years before now
// for twenty years.
func New(now time.Time) (*PKI, error) {
	p := &PKI{Clock: &Clock{t: now}, revoked: map[string]revocation{}}
	var err error
	if p.RootKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if p.InterKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	nb, na := now.AddDate(-10, 0, 0), now.AddDate(10, 0, 0)
	rootT := &x509.Certificate{
		SerialNumber: p.nextSerial(), Subject: pkix.Name{CommonName: "Mohr Test Root", Organization: []string{"Mohr Test"}, Country: []string{"IR"}},
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true,
	}
	if p.Root, err = create(rootT, rootT, &p.RootKey.PublicKey, p.RootKey); err != nil {
		return nil, err
	}
	interT := &x509.Certificate{
		SerialNumber: p.nextSerial(), Subject: pkix.Name{CommonName: "Mohr Test Health Intermediate CA", Organization: []string{"Mohr Test"}, Country: []string{"IR"}},
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true, CRLDistributionPoints: []string{RootCRLURL},
	}
	if p.Intermediate, err = create(interT, p.Root, &p.InterKey.PublicKey, p.RootKey); err != nil {
		return nil, err
	}
	if p.Responder, err = p.Issue(OCSPResponder, LeafOptions{CommonName: "Mohr Test OCSP Responder"}); err != nil {
		return nil, err
	}
	return p, nil
}

func create(t, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, t, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("testpki: create %q: %w", t.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

func (p *PKI) nextSerial() *big.Int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serial++
	// A random high part keeps serials unique across PKIs; the low part is a counter.
	r, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return new(big.Int).Add(new(big.Int).Lsh(r, 32), big.NewInt(p.serial))
}

// Issue issues an end-entity certificate of profile under the intermediate, with a fresh P-256 key.
func (p *PKI) Issue(profile Profile, o LeafOptions) (*Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := p.Clock.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = o.NotBefore.AddDate(1, 0, 0)
	}
	t := &x509.Certificate{
		SerialNumber: p.nextSerial(),
		Subject:      pkix.Name{CommonName: o.CommonName, Country: []string{"IR"}},
		NotBefore:    o.NotBefore, NotAfter: o.NotAfter,
		BasicConstraintsValid: true,
	}
	switch profile {
	case PhysicianSigning:
		if o.NationalCode == "" || o.CouncilNumber == "" {
			return nil, errors.New("testpki: physician-signing needs a national code and a council number")
		}
		prof := o.Profession
		if prof == "" {
			prof = "Physician"
		}
		t.Subject.SerialNumber = hixext.NationalCodePrefix + o.NationalCode
		t.KeyUsage = x509.KeyUsageContentCommitment
		pol, err := x509.OIDFromInts([]uint64{2, 999, 1742, 2, 3})
		if err != nil {
			return nil, err
		}
		t.Policies = []x509.OID{pol}
		ext, err := hixext.Admission{Authority: "Iran Medical Council", Profession: prof, RegistrationNumber: o.CouncilNumber}.Extension()
		if err != nil {
			return nil, err
		}
		t.ExtraExtensions = append(t.ExtraExtensions, ext)
	case OrganisationSeal:
		t.Subject.Organization = []string{o.CommonName}
		t.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	case TSA:
		// Go writes ExtKeyUsage non-critical; RFC 3161 §2.3 wants it critical, and OpenSSL checks.
		t.KeyUsage = x509.KeyUsageDigitalSignature
		v, _ := asn1.Marshal([]asn1.ObjectIdentifier{oidEKUTimeStamping})
		t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidExtKeyUsage, Critical: true, Value: v})
	case OCSPResponder:
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
		t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidOCSPNoCheck, Value: []byte{0x05, 0x00}})
	case FacilityAdapter:
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		t.Subject.SerialNumber = o.SIAMID
		ext, err := hixext.Facility{SIAMID: o.SIAMID, LicenceNumber: o.Licence}.Extension()
		if err != nil {
			return nil, err
		}
		t.ExtraExtensions = append(t.ExtraExtensions, ext)
	default:
		return nil, fmt.Errorf("testpki: unknown profile %d", profile)
	}
	cert, err := create(t, p.Intermediate, &key.PublicKey, p.InterKey)
	if err != nil {
		return nil, err
	}
	return &Leaf{Cert: cert, Key: key, Chain: []*x509.Certificate{cert, p.Intermediate}}, nil
}

// Revoke marks serial revoked at time at with an RFC 5280 reason code; OCSP answers "revoked" from then on.
func (p *PKI) Revoke(serial *big.Int, at time.Time, reason int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revoked[serial.String()] = revocation{at: at, reason: reason}
}

// OCSP returns a DER OCSPResponse (RFC 6960 §4.2.1) for cert, signed by the delegated responder, with
// thisUpdate and producedAt at the clock's time and nextUpdate one hour later. cert must be issued by the
// intermediate. A certificate revoked at a time after the clock's is reported good.
func (p *PKI) OCSP(cert *x509.Certificate) ([]byte, error) {
	now := p.Clock.Now()
	tmpl := ocsp.Response{
		Status: ocsp.Good, SerialNumber: cert.SerialNumber,
		ThisUpdate: now, NextUpdate: now.Add(time.Hour), ProducedAt: now,
		Certificate: p.Responder.Cert, IssuerHash: crypto.SHA256,
	}
	p.mu.Lock()
	r, ok := p.revoked[cert.SerialNumber.String()]
	p.mu.Unlock()
	if ok && !r.at.After(now) {
		tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, r.at, r.reason
	}
	der, err := ocsp.CreateResponse(p.Intermediate, p.Responder.Cert, tmpl, p.Responder.Key)
	if err != nil {
		return nil, fmt.Errorf("testpki: ocsp: %w", err)
	}
	return der, nil
}

// RootCRL returns a CRL (RFC 5280 §5) of the root at the clock's time, valid for a day, listing the
// intermediate if it was revoked at or before then (Revoke with its serial).
func (p *PKI) RootCRL() ([]byte, error) {
	return p.crl(p.Root, p.RootKey, func(serial string) bool { return serial == p.Intermediate.SerialNumber.String() })
}

// IntermediateCRL returns a full CRL of the intermediate at the clock's time, valid for a day, listing the
// end-entity certificates revoked at or before then.
func (p *PKI) IntermediateCRL() ([]byte, error) {
	return p.crl(p.Intermediate, p.InterKey, func(serial string) bool { return serial != p.Intermediate.SerialNumber.String() })
}

func (p *PKI) crl(issuer *x509.Certificate, key crypto.Signer, include func(string) bool) ([]byte, error) {
	now := p.Clock.Now()
	tmpl := &x509.RevocationList{Number: big.NewInt(now.Unix()), ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour)}
	p.mu.Lock()
	for s, r := range p.revoked {
		if include(s) && !r.at.After(now) {
			n, _ := new(big.Int).SetString(s, 10)
			tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: r.at, ReasonCode: r.reason})
		}
	}
	p.mu.Unlock()
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		return nil, fmt.Errorf("testpki: crl: %w", err)
	}
	return der, nil
}

// OCSPForRequest answers a DER OCSPRequest (for an httptest responder around OCSP).
func (p *PKI) OCSPForRequest(reqDER []byte) ([]byte, error) {
	req, err := ocsp.ParseRequest(reqDER)
	if err != nil {
		return nil, fmt.Errorf("testpki: ocsp request: %w", err)
	}
	return p.OCSP(&x509.Certificate{SerialNumber: req.SerialNumber})
}

// WritePEM writes root.pem, intermediate.pem and chain.pem (intermediate then root) into dir and returns
// dir/root.pem, for outside tools such as openssl and certutil.
func (p *PKI) WritePEM(dir string) (string, error) {
	if err := WriteCerts(filepath.Join(dir, "root.pem"), p.Root); err != nil {
		return "", err
	}
	if err := WriteCerts(filepath.Join(dir, "intermediate.pem"), p.Intermediate); err != nil {
		return "", err
	}
	if err := WriteCerts(filepath.Join(dir, "chain.pem"), p.Intermediate, p.Root); err != nil {
		return "", err
	}
	return filepath.Join(dir, "root.pem"), nil
}

// WriteCerts writes certs as PEM CERTIFICATE blocks to path.
func WriteCerts(path string, certs ...*x509.Certificate) error {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return os.WriteFile(path, b, 0o644)
}

// WriteKey writes key as a PKCS#8 PEM file to path (mode 0600).
func WriteKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
