package virtualcard

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// state is what the card keeps across restarts. It holds private keys and the PIN: the state file is
// written with mode 0600 and is for demos and tests only.
type state struct {
	Profile    string            `json:"profile"`
	PIN        string            `json:"pin"`
	MaxTries   int               `json:"maxTries"`
	TriesLeft  int               `json:"triesLeft"`
	Holder     Holder            `json:"holder"`
	Keys       map[byte][]byte   `json:"keys"` // key reference -> PKCS#8
	Files      map[uint16][]byte `json:"files"`
	Objects    map[uint32][]byte `json:"objects"`
	IssuerCert []byte            `json:"issuerCert"`
	IssuerKey  []byte            `json:"issuerKey"` // PKCS#8
}

func (s *state) setIssuer(i *Issuer) error {
	s.IssuerCert = i.Cert.Raw
	kb, err := x509.MarshalPKCS8PrivateKey(i.Key)
	if err != nil {
		// A key that cannot be exported (an HSM's) is fine while the card lives in memory.
		kb = nil
	}
	s.IssuerKey = kb
	return nil
}

func (c *Card) issuer() *Issuer {
	if c.cfg.Issuer != nil {
		return c.cfg.Issuer
	}
	cert, err := x509.ParseCertificate(c.st.IssuerCert)
	if err != nil {
		return nil
	}
	i := &Issuer{Cert: cert}
	if k, err := x509.ParsePKCS8PrivateKey(c.st.IssuerKey); err == nil {
		i.Key, _ = k.(*ecdsa.PrivateKey)
	}
	return i
}

func generateKey(r io.Reader) (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), r)
}

// load reads Config.StatePath if it exists.
func (c *Card) load() (bool, error) {
	if c.cfg.StatePath == "" {
		return false, nil
	}
	b, err := os.ReadFile(c.cfg.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("virtualcard: read state: %w", err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return false, fmt.Errorf("virtualcard: state file %s: %w", c.cfg.StatePath, err)
	}
	if c.cfg.Profile != "" && s.Profile != c.cfg.Profile {
		return false, fmt.Errorf("virtualcard: state file %s holds a %s card, not %s", c.cfg.StatePath, s.Profile, c.cfg.Profile)
	}
	c.keys = map[byte]*ecdsa.PrivateKey{}
	for ref, der := range s.Keys {
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return false, fmt.Errorf("virtualcard: state key %02X: %w", ref, err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return false, fmt.Errorf("virtualcard: state key %02X is %T", ref, k)
		}
		c.keys[ref] = ek
	}
	if s.Files == nil {
		s.Files = map[uint16][]byte{}
	}
	if s.Objects == nil {
		s.Objects = map[uint32][]byte{}
	}
	if s.MaxTries <= 0 || s.TriesLeft < 0 || s.TriesLeft > s.MaxTries || len(s.PIN) < 4 || len(s.PIN) > 8 {
		return false, fmt.Errorf("virtualcard: state file %s: bad PIN data", c.cfg.StatePath)
	}
	c.st = s
	if c.issuer() == nil {
		return false, fmt.Errorf("virtualcard: state file %s: bad issuer", c.cfg.StatePath)
	}
	return true, nil
}

// save writes the state file atomically, if there is one.
func (c *Card) save() error {
	if c.cfg.StatePath == "" {
		return nil
	}
	c.st.Keys = map[byte][]byte{}
	for ref, k := range c.keys {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return err
		}
		c.st.Keys[ref] = der
	}
	b, err := json.MarshalIndent(&c.st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.cfg.StatePath), ".vcard-*")
	if err != nil {
		return fmt.Errorf("virtualcard: write state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("virtualcard: write state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("virtualcard: write state: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.cfg.StatePath); err != nil {
		return fmt.Errorf("virtualcard: write state: %w", err)
	}
	return nil
}
