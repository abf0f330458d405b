package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
)

// sigCache remembers signature verifications that succeeded, keyed by the SHA-256 of everything the verification
// is a function of: the signing certificate's fingerprint, the hash, the digest signed and the signature value.
// ECDSA and RSA PKCS#1 v1.5 verification are deterministic, so a hit answers exactly what the verification would;
// a failure is never remembered. It saves the repeated verifications of one ingestion (the B-B signature is
// verified before the upgrade and again in the B-T and B-LT results; the signature timestamp's token before and
// after revocation data is added) without any check being skipped for bytes that were not verified before.
type sigCache = boundedCache[[32]byte, struct{}]

// maxSigCache bounds the remembered verifications; a few per prescription in flight are what is reused.
const maxSigCache = 1 << 16

// verifySignature checks sig over digest (hash h) with signer's key: family "ecdsa" (ASN.1 r,s) or "rsa"
// (PKCS#1 v1.5). ok is false for another key type (the caller reports the key as not allowed).
func verifySignature(c *sigCache, signer *certEntry, family string, h crypto.Hash, digest, sig []byte) (valid, ok bool) {
	var key [32]byte
	if c != nil {
		key = sigCacheKey(signer.fp, family, h, digest, sig)
		if _, hit := c.get(key); hit {
			return true, true
		}
	}
	switch pub := signer.cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		valid = family == "ecdsa" && ecdsa.VerifyASN1(pub, digest, sig)
	case *rsa.PublicKey:
		valid = family == "rsa" && rsa.VerifyPKCS1v15(pub, h, digest, sig) == nil
	default:
		return false, false
	}
	if valid && c != nil {
		c.put(key, struct{}{})
	}
	return valid, true
}

// sigCacheKey is the key of one verification in a sigCache: the SHA-256 of everything it is a function of.
func sigCacheKey(certFP [32]byte, family string, h crypto.Hash, digest, sig []byte) (key [32]byte) {
	k := sha256.New()
	k.Write(certFP[:])
	k.Write([]byte{byte(h)})
	k.Write([]byte(family))
	k.Write([]byte{0})
	k.Write(digest)
	k.Write([]byte{0})
	k.Write(sig)
	k.Sum(key[:0])
	return key
}

// signedHere is a signature this process made and verified before releasing it (keys.Verifying, or an
// hsm.Key's own check): the SignerInfo's digest and signature value, under cert's key, with the signature
// algorithm family the verifier names it by. Only a signer whose public key is cert's may produce one (NewTSA
// checks it with keys.MatchesCertificate).
type signedHere struct {
	cert   *x509.Certificate
	family string
	h      crypto.Hash
	digest []byte
	sig    []byte
}

// rememberSignedHere records s in v's signature cache, so that validating what carries it (the signature
// timestamp the ingestion has just added) finds the verification the signer made instead of making it again:
// the same ECDSA or RSA PKCS#1 v1.5 check over the same inputs (sigCache), made once.
func (v *Verifier) rememberSignedHere(s *signedHere) {
	if s == nil || v.sigs == nil || (s.family != "ecdsa" && s.family != "rsa") {
		return
	}
	e, err := v.cert(s.cert.Raw)
	if err != nil {
		return
	}
	v.sigs.put(sigCacheKey(e.fp, s.family, s.h, s.digest, s.sig), struct{}{})
}
