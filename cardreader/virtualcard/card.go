// Package virtualcard is a smart card in Go that implements Mohr's three card profiles (national ID,
// medical council, PIV; see docs/cards.md) with its own keys, files and PIN counters, and connects to a
// real pcscd through the vsmartcard vpcd driver (ConnectVPCD). The card logic is Process, which takes a
// command APDU and returns the response APDU, so it can be tested without pcscd.
//
// It is a test and demo device: keys and the PIN live in memory and, with Config.StatePath, in a state
// file on disk.
package virtualcard

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mohr-hix/mohr/cardreader/internal/cardfmt"
	"github.com/mohr-hix/mohr/cardreader/internal/tlv"
)

// Profiles a virtual card can play.
const (
	ProfileNationalID = "national-id"
	ProfileCouncil    = "medical-council"
	ProfilePIV        = "piv"
)

// Holder is the synthetic person on the card. Dates are YYYYMMDD.
type Holder struct {
	NationalCode  string `json:"nationalCode"`
	GivenName     string `json:"givenName"`
	FamilyName    string `json:"familyName"`
	BirthDate     string `json:"birthDate"`
	CardNumber    string `json:"cardNumber"`
	Expiry        string `json:"expiry"`
	CouncilNumber string `json:"councilNumber,omitempty"`
	Specialty     string `json:"specialty,omitempty"`
}

// DefaultHolder is the synthetic holder used when Config.Holder is empty (the national code is DOMAIN.md's
// worked example).
var DefaultHolder = Holder{
	NationalCode:  "0499370899",
	GivenName:     "سارا",
	FamilyName:    "احمدی",
	BirthDate:     "19850321",
	CardNumber:    "IR-0000012345",
	Expiry:        "20301231",
	CouncilNumber: "123456",
	Specialty:     "General practice",
}

// Config configures a virtual card.
type Config struct {
	// Profile is national-id, medical-council or piv.
	Profile string
	// PIN is the card PIN (4 to 8 bytes); "123456" when empty. MaxTries (default 3) wrong PINs block it.
	PIN      []byte
	MaxTries int
	Holder   Holder
	// Issuer certifies the card's keys; when nil the card creates its own card issuer CA.
	Issuer *Issuer
	// StatePath, if set, keeps keys, PIN counter, files and the issuer in a file: loaded when it exists
	// (the other fields but Extended are then ignored), written after every change.
	StatePath string
	// Extended announces extended-length APDUs in the ATR and accepts them. Without it the card
	// takes short APDUs only, with command chaining and GET RESPONSE.
	Extended bool
	// ComfortSignatures is the council signing key's comfort-signature counter: after one successful VERIFY,
	// that many PSO: COMPUTE DIGITAL SIGNATURE commands (ISO/IEC 7816-8 §11.4) succeed without a new VERIFY
	// while the card session lasts. Power-off, reset, a SELECT that leaves the application, a logout (VERIFY
	// with P1 = 'FF', ISO/IEC 7816-4:2013 §11.5.6), a wrong PIN or the counter running out clear it; then PSO
	// answers 6982. 0 (the default) is "PIN always": VERIFY before every signature. At most 255. Like
	// Extended, it is taken from Config even when StatePath is loaded.
	ComfortSignatures int
	// Rand and Now default to crypto/rand and time.Now.
	Rand io.Reader
	Now  func() time.Time
}

// ErrRemoved is returned by ConnectVPCD after Remove or RemoveOn pulled the card.
var ErrRemoved = errors.New("virtualcard: card removed")

// Stat is the time the card spent computing the answers to one instruction.
type Stat struct {
	Count int
	Total time.Duration
}

// Card is a virtual card. Its methods are safe for concurrent use.
type Card struct {
	mu       sync.Mutex
	cfg      Config
	rand     io.Reader
	st       state
	keys     map[byte]*ecdsa.PrivateKey
	atr      []byte
	pinRef   byte
	selected bool
	curEF    uint16
	verified bool
	comfort  int // comfort signatures left after the last VERIFY (Config.ComfortSignatures > 0)
	seKey    byte
	chain    []byte
	chainHdr [3]byte
	pending  []byte
	pendSW   uint16
	stats    map[byte]Stat

	connMu   sync.Mutex
	conn     net.Conn
	removeOn int
	removed  bool
}

// New makes a virtual card: it loads Config.StatePath if that file exists, and otherwise generates the
// profile's keys, certifies them with the issuer and writes the holder files.
func New(cfg Config) (*Card, error) {
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ComfortSignatures < 0 || cfg.ComfortSignatures > 255 {
		return nil, errors.New("virtualcard: ComfortSignatures must be 0 to 255")
	}
	c := &Card{cfg: cfg, rand: cfg.Rand, removeOn: -1, stats: map[byte]Stat{}}
	loaded, err := c.load()
	if err != nil {
		return nil, err
	}
	if !loaded {
		if err := c.provision(); err != nil {
			return nil, err
		}
		if err := c.save(); err != nil {
			return nil, err
		}
	}
	if c.st.Profile != ProfileCouncil {
		c.cfg.ComfortSignatures = 0 // only the council signing key has the comfort-signature mode
	}
	c.pinRef = cardfmt.PINRef
	if c.st.Profile == ProfilePIV {
		c.pinRef = cardfmt.PIVPINRef
	}
	// ATR (ISO/IEC 7816-3 §8.2): TS=3B, T0 = TD1 present + 5 historical bytes, TD1 = T=1; historical bytes
	// '80' then card capabilities '73' (ISO/IEC 7816-4 §8.1.1.2.7): chaining, and extended length if enabled.
	caps := byte(0x80)
	if cfg.Extended {
		caps |= 0x40
	}
	atr := []byte{0x3B, 0x85, 0x01, 0x80, 0x73, 0x00, 0x00, caps}
	var tck byte
	for _, b := range atr[1:] {
		tck ^= b
	}
	c.atr = append(atr, tck)
	return c, nil
}

// Profile returns the profile the card plays.
func (c *Card) Profile() string { return c.st.Profile }

// ATR returns the card's answer-to-reset.
func (c *Card) ATR() []byte { return append([]byte(nil), c.atr...) }

// IssuerCertificate returns the certificate of the CA that certified the card's keys.
func (c *Card) IssuerCertificate() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.issuer().Cert
}

// Issuer returns the card issuer (certificate and key), for tests that issue a new card certificate.
func (c *Card) Issuer() *Issuer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.issuer()
}

// Certificate returns the card's certificate for key reference ref (81/82, or PIV 9A/9C), or nil.
func (c *Card) Certificate(ref byte) *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	der := c.certDER(ref)
	if der == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil
	}
	return cert
}

// TriesLeft returns the PIN tries left.
func (c *Card) TriesLeft() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.TriesLeft
}

// Stats returns the compute time per instruction since the last ResetStats.
func (c *Card) Stats() map[byte]Stat {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[byte]Stat, len(c.stats))
	for k, v := range c.stats {
		out[k] = v
	}
	return out
}

// ComfortLeft returns the comfort signatures left in the current card session (0 without comfort mode,
// before VERIFY, or after a reset or logout).
func (c *Card) ComfortLeft() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.comfort
}

// ResetStats clears the statistics.
func (c *Card) ResetStats() {
	c.mu.Lock()
	c.stats = map[byte]Stat{}
	c.mu.Unlock()
}

// Reset is a warm reset (vpcd control byte 02, or power off/on): security state, selection and
// pending data are lost.
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetSession()
}

func (c *Card) resetSession() {
	c.selected, c.curEF, c.verified, c.seKey, c.comfort = false, 0, false, 0, 0
	c.chain, c.pending = nil, nil
}

func (c *Card) aid() []byte {
	switch c.st.Profile {
	case ProfileNationalID:
		return cardfmt.NationalIDAID
	case ProfileCouncil:
		return cardfmt.CouncilAID
	}
	return cardfmt.PIVAID
}

// provision creates keys, certificates and files for a fresh card.
func (c *Card) provision() error {
	cfg := c.cfg
	switch cfg.Profile {
	case ProfileNationalID, ProfileCouncil, ProfilePIV:
	default:
		return fmt.Errorf("virtualcard: unknown profile %q", cfg.Profile)
	}
	pin := cfg.PIN
	if len(pin) == 0 {
		pin = []byte("123456")
	}
	if len(pin) < 4 || len(pin) > 8 {
		return errors.New("virtualcard: PIN must be 4 to 8 bytes")
	}
	tries := cfg.MaxTries
	if tries <= 0 {
		tries = 3
	}
	if tries > 15 {
		return errors.New("virtualcard: at most 15 PIN tries")
	}
	h := cfg.Holder
	if h == (Holder{}) {
		h = DefaultHolder
	}
	iss := cfg.Issuer
	if iss == nil {
		var err error
		if iss, err = NewIssuer(c.rand, cfg.Now()); err != nil {
			return err
		}
	}
	c.st = state{Profile: cfg.Profile, PIN: string(pin), MaxTries: tries, TriesLeft: tries, Holder: h,
		Files: map[uint16][]byte{}, Objects: map[uint32][]byte{}}
	if err := c.st.setIssuer(iss); err != nil {
		return err
	}
	c.keys = map[byte]*ecdsa.PrivateKey{}
	now := cfg.Now()
	subject := pkix.Name{CommonName: h.GivenName + " " + h.FamilyName, SerialNumber: "IDCIR-" + h.NationalCode, Country: []string{"IR"}}
	type keyPlan struct {
		ref byte
		ku  x509.KeyUsage
		eku []x509.ExtKeyUsage
	}
	var plan []keyPlan
	switch cfg.Profile {
	case ProfileNationalID:
		plan = []keyPlan{{cardfmt.KeyAuth, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}}
	case ProfileCouncil:
		plan = []keyPlan{
			{cardfmt.KeyAuth, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
			{cardfmt.KeySign, x509.KeyUsageContentCommitment, nil},
		}
	case ProfilePIV:
		plan = []keyPlan{
			{0x9A, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
			{0x9C, x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, nil},
		}
	}
	for _, p := range plan {
		k, err := ecdsa.GenerateKey(elliptic.P256(), c.rand)
		if err != nil {
			return fmt.Errorf("virtualcard: generate key: %w", err)
		}
		c.keys[p.ref] = k
		der, err := iss.certify(c.rand, now, &k.PublicKey, subject, p.ku, p.eku)
		if err != nil {
			return err
		}
		c.setCertDER(p.ref, der)
	}
	if cfg.Profile == ProfilePIV {
		guid := make([]byte, 16)
		io.ReadFull(c.rand, guid)
		chuid := tlv.Append(tlv.Encode(0x30, make([]byte, 25)), 0x34, guid)
		chuid = tlv.Append(chuid, 0x35, []byte(h.Expiry))
		chuid = tlv.Append(chuid, 0x3E, nil)
		c.st.Objects[cardfmt.PIVTagCHUID] = tlv.Append(chuid, 0xFE, nil)
		return nil
	}
	var hb []byte
	add := func(tag uint32, v string) {
		if v != "" {
			hb = tlv.Append(hb, tag, []byte(v))
		}
	}
	add(cardfmt.TagNationalCode, h.NationalCode)
	add(cardfmt.TagGivenName, h.GivenName)
	add(cardfmt.TagFamilyName, h.FamilyName)
	add(cardfmt.TagBirthDate, h.BirthDate)
	add(cardfmt.TagCardNumber, h.CardNumber)
	add(cardfmt.TagExpiry, h.Expiry)
	if cfg.Profile == ProfileCouncil {
		add(cardfmt.TagCouncilNumber, h.CouncilNumber)
		add(cardfmt.TagSpecialty, h.Specialty)
	}
	c.st.Files[cardfmt.FIDHolder] = tlv.Encode(cardfmt.TagHolderTemplate, hb)
	return nil
}

func (c *Card) certDER(ref byte) []byte {
	switch ref {
	case 0x9A:
		o := c.st.Objects[cardfmt.PIVTagCertAuth]
		if v, ok, _ := tlv.Find(o, 0x70); ok {
			return v
		}
		return nil
	case 0x9C:
		o := c.st.Objects[cardfmt.PIVTagCertSign]
		if v, ok, _ := tlv.Find(o, 0x70); ok {
			return v
		}
		return nil
	case cardfmt.KeyAuth:
		return c.st.Files[cardfmt.FIDAuthCert]
	case cardfmt.KeySign:
		return c.st.Files[cardfmt.FIDSignCert]
	}
	return nil
}

func (c *Card) setCertDER(ref byte, der []byte) {
	switch ref {
	case 0x9A, 0x9C:
		tag := cardfmt.PIVTagCertAuth
		if ref == 0x9C {
			tag = cardfmt.PIVTagCertSign
		}
		o := tlv.Append(tlv.Encode(0x70, der), 0x71, []byte{0})
		c.st.Objects[tag] = tlv.Append(o, 0xFE, nil)
	case cardfmt.KeyAuth:
		c.st.Files[cardfmt.FIDAuthCert] = der
	case cardfmt.KeySign:
		c.st.Files[cardfmt.FIDSignCert] = der
	}
}

// sign computes a plain ECDSA signature r||s (BSI TR-03111 §5.2.1) of hash with key ref.
func (c *Card) signPlain(ref byte, hash []byte) ([]byte, bool) {
	k := c.keys[ref]
	if k == nil {
		return nil, false
	}
	r, s, err := ecdsa.Sign(c.rand, k, hash)
	if err != nil {
		return nil, false
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, true
}

func (c *Card) signASN1(ref byte, hash []byte) ([]byte, bool) {
	k := c.keys[ref]
	if k == nil {
		return nil, false
	}
	sig, err := ecdsa.SignASN1(c.rand, k, hash)
	return sig, err == nil
}

// checkPIN compares a VERIFY data field with the PIN padded with 'FF' to 8 bytes, in constant time.
func (c *Card) checkPIN(data []byte) bool {
	var want [8]byte
	for i := range want {
		want[i] = 0xFF
	}
	copy(want[:], c.st.PIN)
	ok := subtle.ConstantTimeCompare(want[:], data) == 1
	clear(want[:])
	return ok
}
