package ca

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"math/big"
)

// Issuer is a CA certificate with the key that signs under it. Signer may be a file key, an HSM key or (never
// for a CA) a card: ca does not know which.
type Issuer struct {
	Cert   *x509.Certificate
	Signer crypto.Signer
	// Chain holds the issuer's certificate first, then each parent up to and including the root.
	Chain []*x509.Certificate
}

// Root returns the last certificate of the chain.
func (is *Issuer) Root() *x509.Certificate { return is.Chain[len(is.Chain)-1] }

// ShardFor returns the CRL shard a certificate with serial belongs to: serial mod shards. Every certificate names
// its shard in its CRL distribution point (RFC 5280 §4.2.1.13) and each shard's CRL carries a matching issuing
// distribution point (§5.2.5), so no single CRL grows with the whole population.
func ShardFor(serial *big.Int, shards int) int {
	if shards <= 1 {
		return 0
	}
	return int(new(big.Int).Mod(serial, big.NewInt(int64(shards))).Int64())
}

// CRLURL returns the URL of shard's CRL under base, e.g. http://crl.example/intermediate/3.crl.
func CRLURL(base string, shard int) string { return fmt.Sprintf("%s/%d.crl", base, shard) }

// SerialHex is the canonical text form of a serial number in the store and the CLI: lower-case hex.
func SerialHex(serial *big.Int) string { return fmt.Sprintf("%x", serial) }
