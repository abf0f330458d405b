package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing/offline"
)

// trustBundlePublisher builds the publisher of GET /trust-bundle: signed by the Ministry's trust-bundle seal
// (services.trust_bundle_key; a development file key when empty), whose public key is written to
// <data-dir>/services/trust-bundle-seal.pub for verifiers to pin.
func (n *node) trustBundlePublisher(ctx context.Context) (*offline.Publisher, error) {
	key, err := serviceKey(ctx, n.cfg, "trust-bundle", n.cfg.Services.TrustBundleKey)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	pubPath := filepath.Join(n.cfg.dataDir, "services", "trust-bundle-seal.pub")
	if err := os.MkdirAll(filepath.Dir(pubPath), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o644); err != nil {
		return nil, err
	}
	return &offline.Publisher{Seal: keys.Verifying(key), Content: n.trustBundleContent}, nil
}

// trustBundleContent is what the bundle holds: the current issuer chain, the TSA and OCSP responder
// certificates, and every revoked or held physician-signing certificate not yet expired whose issuer is in
// the bundle.
func (n *node) trustBundleContent(ctx context.Context) (offline.BundleInput, error) {
	is := n.ca.Issuer()
	in := offline.BundleInput{Roots: []*x509.Certificate{is.Root()}, Intermediates: is.Chain[:len(is.Chain)-1]}
	if n.tsa != nil {
		in.TSAs = append(in.TSAs, n.tsa.Certificate())
	}
	if c := n.ocsp.Certificate(); c != nil {
		in.OCSPResponders = append(in.OCSPResponders, c)
	}
	now := time.Now()
	for _, st := range []ca.Status{ca.StatusRevoked, ca.StatusHeld} {
		after := ""
		for {
			recs, err := n.st.Certificates(ctx, ca.CertFilter{Profile: ca.ProfilePhysicianSigning, Status: st, Limit: 1000, After: after})
			if err != nil {
				return in, err
			}
			for _, r := range recs {
				if r.NotAfter.Before(now) || r.DER == nil {
					continue
				}
				c, err := x509.ParseCertificate(r.DER)
				if err != nil {
					continue
				}
				for _, i := range in.Intermediates {
					if c.CheckSignatureFrom(i) == nil {
						in.Revoked = append(in.Revoked, offline.Revoked{Issuer: i, Serial: new(big.Int).Set(c.SerialNumber), RevokedAt: r.RevokedAt})
						break
					}
				}
			}
			if len(recs) < 1000 {
				break
			}
			after = recs[len(recs)-1].Serial
		}
	}
	return in, nil
}
