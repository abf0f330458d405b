package signing

import (
	"crypto/sha256"
)

// SignatureBinding is what an offline QR payload (signing/offline) records of the CAdES signature it accompanies:
// the SHA-256 of the enveloped content (the message-digest the SignerInfo signs, RFC 5652 §11.2) and the SHA-256
// of the SignerInfo's signature value (RFC 5652 §5.3). The second names one signature, not only one document.
type SignatureBinding struct {
	ContentSHA256   [32]byte
	SignatureSHA256 [32]byte
}

// Binding returns the SignatureBinding of der, a SignedData with one SignerInfo and enveloped content. It does
// not validate the signature: a verifier checks that separately and then compares bindings.
func Binding(der []byte) (SignatureBinding, error) {
	sd, err := parseOne(der)
	if err != nil {
		return SignatureBinding{}, err
	}
	if !sd.hasContent {
		return SignatureBinding{}, formatErr("no enveloped content")
	}
	return SignatureBinding{ContentSHA256: sha256.Sum256(sd.content), SignatureSHA256: sha256.Sum256(sd.signers[0].signature)}, nil
}
