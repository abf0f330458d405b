package offline

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/veraison/go-cose"
)

// BundleVersion is the version of the trust-bundle schema (docs/offline.md).
const BundleVersion = 1

// BundleContentType is the COSE content type (RFC 9052 §3.1, label 3) of a signed trust bundle; a verifier
// refuses a COSE_Sign1 without it, so no other message signed by the seal key can pass for a bundle.
const BundleContentType = "application/vnd.mohr.trust-bundle+cbor"

// bundleBody is the CBOR of a trust bundle (docs/offline.md): canonical, integer keys.
type bundleBody struct {
	Version       uint        `cbor:"1,keyasint"`
	Issued        int64       `cbor:"2,keyasint"`
	NextUpdate    int64       `cbor:"3,keyasint"`
	Roots         [][]byte    `cbor:"4,keyasint"`
	Intermediates [][]byte    `cbor:"5,keyasint"`
	TSAs          [][]byte    `cbor:"6,keyasint"`
	OCSP          [][]byte    `cbor:"7,keyasint"`
	Revoked       []revokedV1 `cbor:"8,keyasint"`
}

// revokedV1 is one revoked physician-signing certificate: [issuer index into Intermediates, serial (unsigned
// big-endian), revocation time (seconds since 1970 UTC)].
type revokedV1 struct {
	_         struct{} `cbor:",toarray"`
	Issuer    uint
	Serial    []byte
	RevokedAt int64
}

// Revoked is a revoked certificate in a bundle's revocation snapshot.
type Revoked struct {
	Issuer    *x509.Certificate
	Serial    *big.Int
	RevokedAt time.Time
}

// BundleInput is what the Ministry puts in a trust bundle.
type BundleInput struct {
	Issued, NextUpdate time.Time
	Roots              []*x509.Certificate
	Intermediates      []*x509.Certificate // the CAs that issue physician-signing certificates
	TSAs               []*x509.Certificate
	OCSPResponders     []*x509.Certificate
	// Revoked are the revoked physician-signing certificates; each Issuer must be one of Intermediates.
	Revoked []Revoked
}

// SealKeyID is the COSE kid (RFC 9052 §3.1, label 4) of a seal key: the first 8 bytes of the SHA-256 of its
// SubjectPublicKeyInfo.
func SealKeyID(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("offline: seal key: %w", err)
	}
	s := sha256.Sum256(spki)
	return s[:8], nil
}

// MakeBundle signs in as a trust bundle: a COSE_Sign1 (RFC 9052 §4.2) whose protected header holds the
// algorithm, the content type BundleContentType and the seal key's kid.
func MakeBundle(ctx context.Context, in BundleInput, seal crypto.Signer) ([]byte, error) {
	if !in.NextUpdate.After(in.Issued) || len(in.Roots) == 0 || len(in.Intermediates) == 0 {
		return nil, errors.New("offline: a bundle needs roots, intermediates and a next update after its issue time")
	}
	raw := func(cs []*x509.Certificate) [][]byte {
		out := make([][]byte, 0, len(cs))
		for _, c := range cs {
			out = append(out, c.Raw)
		}
		return out
	}
	b := bundleBody{Version: BundleVersion, Issued: in.Issued.Unix(), NextUpdate: in.NextUpdate.Unix(),
		Roots: raw(in.Roots), Intermediates: raw(in.Intermediates), TSAs: raw(in.TSAs), OCSP: raw(in.OCSPResponders),
		Revoked: make([]revokedV1, 0, len(in.Revoked))}
	for _, r := range in.Revoked {
		i := slices.IndexFunc(in.Intermediates, func(c *x509.Certificate) bool { return c.Equal(r.Issuer) })
		if i < 0 || r.Serial == nil || r.Serial.Sign() < 0 {
			return nil, errors.New("offline: a revoked certificate's issuer is not among the intermediates")
		}
		b.Revoked = append(b.Revoked, revokedV1{Issuer: uint(i), Serial: r.Serial.Bytes(), RevokedAt: r.RevokedAt.Unix()})
	}
	slices.SortFunc(b.Revoked, func(x, y revokedV1) int {
		return cmp.Or(cmp.Compare(x.Issuer, y.Issuer), bytes.Compare(x.Serial, y.Serial))
	})
	b.Revoked = slices.CompactFunc(b.Revoked, func(x, y revokedV1) bool { return x.Issuer == y.Issuer && bytes.Equal(x.Serial, y.Serial) })
	body, err := encMode.Marshal(&b)
	if err != nil {
		return nil, err
	}
	kid, err := SealKeyID(seal.Public())
	if err != nil {
		return nil, err
	}
	return sign1(ctx, body, seal, nil, cose.ProtectedHeader{cose.HeaderLabelContentType: BundleContentType, cose.HeaderLabelKeyID: kid})
}

// DecodeCOSE reads a tagged COSE_Sign1 (RFC 9052 §4.2) without verifying it.
func DecodeCOSE(b []byte) (*cose.Sign1Message, error) {
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(b); err != nil {
		return nil, err
	}
	return &msg, nil
}

// Bundle is a verified trust bundle.
type Bundle struct {
	Issued, NextUpdate time.Time
	Roots              []*x509.Certificate
	Intermediates      []*x509.Certificate
	TSAs               []*x509.Certificate
	OCSPResponders     []*x509.Certificate
	// RevokedCount is the size of the revocation snapshot.
	RevokedCount int
	// SHA256 is the digest of the signed bundle as received.
	SHA256 [32]byte

	roots, inter *x509.CertPool
	revoked      map[revKey]time.Time
}

type revKey struct {
	issuer int
	serial string
}

// Age is how old the bundle is at now.
func (b *Bundle) Age(now time.Time) time.Duration { return now.Sub(b.Issued) }

// RevokedAt returns when the certificate with serial, issued by Intermediates[issuer], was revoked, if the
// snapshot lists it.
func (b *Bundle) RevokedAt(issuer *x509.Certificate, serial *big.Int) (time.Time, bool) {
	i := slices.IndexFunc(b.Intermediates, func(c *x509.Certificate) bool { return c.Equal(issuer) })
	if i < 0 {
		return time.Time{}, false
	}
	t, ok := b.revoked[revKey{i, string(serial.Bytes())}]
	return t, ok
}

// Errors OpenBundle returns; callers branch with errors.Is.
var (
	// ErrBundleSignature: the bundle is not signed by the pinned seal key (another key, or a broken signature).
	ErrBundleSignature = errors.New("offline: trust bundle is not signed by the pinned seal key")
	// ErrBundleFormat: the bundle is not a COSE_Sign1 trust bundle Mohr can read.
	ErrBundleFormat = errors.New("offline: malformed trust bundle")
	// ErrBundleExpired: the bundle's next update has passed (see *BundleAgeError for the dates).
	ErrBundleExpired = errors.New("offline: trust bundle expired")
	// ErrBundleNotYetValid: the bundle's issue time is in the future of the verifier's clock.
	ErrBundleNotYetValid = errors.New("offline: trust bundle not yet valid")
)

// BundleAgeError says why a bundle's dates are refused, with its age. It matches ErrBundleExpired or
// ErrBundleNotYetValid under errors.Is.
type BundleAgeError struct {
	Issued, NextUpdate, Now time.Time
}

func (e *BundleAgeError) Error() string {
	if e.Now.Before(e.Issued) {
		return fmt.Sprintf("offline: trust bundle not yet valid: issued %s, the clock says %s", e.Issued.Format(time.RFC3339), e.Now.Format(time.RFC3339))
	}
	return fmt.Sprintf("offline: trust bundle expired at %s; it was issued %s (%s ago): fetch a new one (mohr trust-bundle fetch)",
		e.NextUpdate.Format(time.RFC3339), e.Issued.Format(time.RFC3339), roundAge(e.Now.Sub(e.Issued)))
}

func (e *BundleAgeError) Is(target error) bool {
	if e.Now.Before(e.Issued) {
		return target == ErrBundleNotYetValid
	}
	return target == ErrBundleExpired
}

// roundAge prints a duration as days and hours.
func roundAge(d time.Duration) string {
	d = d.Round(time.Minute)
	if d >= 24*time.Hour {
		return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
	return d.String()
}

// bundleSkew is the clock difference tolerated for a bundle's issue time.
const bundleSkew = 5 * time.Minute

// OpenBundle verifies a signed trust bundle against the pinned seal public key and returns it. It refuses a
// bundle signed by any other key, a malformed or non-canonical one, and one whose next update is before now
// (a *BundleAgeError). The seal key is never taken from the bundle itself.
func OpenBundle(signed []byte, seal crypto.PublicKey, now time.Time) (*Bundle, error) {
	b, err := openBundle(signed, seal)
	if err != nil {
		return nil, err
	}
	if now.Before(b.Issued.Add(-bundleSkew)) || !now.Before(b.NextUpdate) {
		return nil, &BundleAgeError{Issued: b.Issued, NextUpdate: b.NextUpdate, Now: now.UTC()}
	}
	return b, nil
}

// InspectBundle verifies a bundle's signature and reads it without checking its dates (for "mohr trust-bundle
// show", which reports the age of an expired bundle too).
func InspectBundle(signed []byte, seal crypto.PublicKey) (*Bundle, error) {
	return openBundle(signed, seal)
}

func openBundle(signed []byte, seal crypto.PublicKey) (*Bundle, error) {
	if len(signed) > 64<<20 {
		return nil, fmt.Errorf("%w: too large", ErrBundleFormat)
	}
	msg, err := DecodeCOSE(signed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBundleFormat, err)
	}
	alg, err := algorithmFor(seal)
	if err != nil {
		return nil, err
	}
	kid, err := SealKeyID(seal)
	if err != nil {
		return nil, err
	}
	if got, _ := msg.Headers.Protected[cose.HeaderLabelKeyID].([]byte); !bytes.Equal(got, kid) {
		return nil, fmt.Errorf("%w: it names seal key %x, the pinned key is %x", ErrBundleSignature, got, kid)
	}
	vf, err := cose.NewVerifier(alg, seal)
	if err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}
	if err := msg.Verify(nil, vf); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBundleSignature, err)
	}
	if ct, _ := msg.Headers.Protected[cose.HeaderLabelContentType].(string); ct != BundleContentType {
		return nil, fmt.Errorf("%w: content type %q", ErrBundleFormat, ct)
	}
	return parseBundleBody(msg.Payload, sha256.Sum256(signed))
}

func parseBundleBody(body []byte, digest [32]byte) (*Bundle, error) {
	var bb bundleBody
	if err := unmarshalCanonical(body, &bb); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBundleFormat, err)
	}
	if bb.Version != BundleVersion || bb.NextUpdate <= bb.Issued || len(bb.Roots) == 0 || len(bb.Intermediates) == 0 {
		return nil, fmt.Errorf("%w: version, dates, roots or intermediates", ErrBundleFormat)
	}
	b := &Bundle{Issued: time.Unix(bb.Issued, 0).UTC(), NextUpdate: time.Unix(bb.NextUpdate, 0).UTC(), SHA256: digest,
		roots: x509.NewCertPool(), inter: x509.NewCertPool(), revoked: make(map[revKey]time.Time, len(bb.Revoked)), RevokedCount: len(bb.Revoked)}
	parse := func(ders [][]byte, pool *x509.CertPool) ([]*x509.Certificate, error) {
		var out []*x509.Certificate
		for _, d := range ders {
			c, err := x509.ParseCertificate(d)
			if err != nil {
				return nil, fmt.Errorf("%w: certificate: %v", ErrBundleFormat, err)
			}
			if pool != nil {
				pool.AddCert(c)
			}
			out = append(out, c)
		}
		return out, nil
	}
	var err error
	if b.Roots, err = parse(bb.Roots, b.roots); err != nil {
		return nil, err
	}
	if b.Intermediates, err = parse(bb.Intermediates, b.inter); err != nil {
		return nil, err
	}
	if b.TSAs, err = parse(bb.TSAs, nil); err != nil {
		return nil, err
	}
	if b.OCSPResponders, err = parse(bb.OCSP, nil); err != nil {
		return nil, err
	}
	for i, r := range bb.Revoked {
		if r.Issuer >= uint(len(b.Intermediates)) || len(r.Serial) == 0 || len(r.Serial) > 20 || r.Serial[0] == 0 {
			return nil, fmt.Errorf("%w: revoked entry %d", ErrBundleFormat, i)
		}
		if i > 0 { // sorted and unique: one encoding per snapshot
			p := bb.Revoked[i-1]
			if cmp.Or(cmp.Compare(p.Issuer, r.Issuer), bytes.Compare(p.Serial, r.Serial)) >= 0 {
				return nil, fmt.Errorf("%w: revoked entries not sorted", ErrBundleFormat)
			}
		}
		b.revoked[revKey{int(r.Issuer), string(r.Serial)}] = time.Unix(r.RevokedAt, 0).UTC()
	}
	return b, nil
}
