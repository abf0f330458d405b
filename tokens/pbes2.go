package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
)

// PKCS#5 v2.1 (RFC 8018) PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, the encryption of an RFC 5958
// EncryptedPrivateKeyInfo. It is written here on the standard library (crypto/pbkdf2) rather than through
// pemutil, whose dependencies are not in go.sum.
var (
	oidPBES2          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES256CBC      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// PBKDF2Iterations is the iteration count EncodeKeystore uses (OWASP 2023 figure for PBKDF2-HMAC-SHA256).
var PBKDF2Iterations = 600000

// maxPBKDF2Iterations bounds what DecodeKeystore accepts, so a hostile file cannot make it spin.
const maxPBKDF2Iterations = 10_000_000

type encryptedPrivateKeyInfo struct {
	Algo pkix.AlgorithmIdentifier
	Data []byte
}

type pbes2Params struct {
	KDF pkix.AlgorithmIdentifier
	Enc pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
}

func encryptPKCS8(rand io.Reader, der, password []byte) ([]byte, error) {
	salt := make([]byte, 16)
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, err
	}
	key, err := pbkdf2.Key(sha256.New, string(password), salt, PBKDF2Iterations, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	// PKCS#7 padding (RFC 8018 §6.1.1 step 4).
	pad := aes.BlockSize - len(der)%aes.BlockSize
	buf := make([]byte, len(der)+pad)
	copy(buf, der)
	for i := len(der); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)
	kdf, err := asn1.Marshal(pbkdf2Params{Salt: salt, Iterations: PBKDF2Iterations, KeyLength: 32,
		PRF: pkix.AlgorithmIdentifier{Algorithm: oidHMACWithSHA256, Parameters: asn1.NullRawValue}})
	if err != nil {
		return nil, err
	}
	ivDER, err := asn1.Marshal(iv)
	if err != nil {
		return nil, err
	}
	params, err := asn1.Marshal(pbes2Params{
		KDF: pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdf}},
		Enc: pkix.AlgorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivDER}},
	})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(encryptedPrivateKeyInfo{
		Algo: pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: params}},
		Data: buf,
	})
}

var errBadStructure = errors.New("unsupported or malformed EncryptedPrivateKeyInfo (want PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC)")

// decryptPKCS8 returns errBadStructure for a file it cannot read and ErrBadPassword when the padding is wrong.
func decryptPKCS8(data, password []byte) ([]byte, error) {
	var epki encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(data, &epki); err != nil || len(rest) != 0 || !epki.Algo.Algorithm.Equal(oidPBES2) {
		return nil, errBadStructure
	}
	var p pbes2Params
	if rest, err := asn1.Unmarshal(epki.Algo.Parameters.FullBytes, &p); err != nil || len(rest) != 0 ||
		!p.KDF.Algorithm.Equal(oidPBKDF2) || !p.Enc.Algorithm.Equal(oidAES256CBC) {
		return nil, errBadStructure
	}
	var kp pbkdf2Params
	if rest, err := asn1.Unmarshal(p.KDF.Parameters.FullBytes, &kp); err != nil || len(rest) != 0 ||
		!kp.PRF.Algorithm.Equal(oidHMACWithSHA256) || kp.Iterations < 1 || kp.Iterations > maxPBKDF2Iterations ||
		(kp.KeyLength != 0 && kp.KeyLength != 32) {
		return nil, errBadStructure
	}
	var iv []byte
	if rest, err := asn1.Unmarshal(p.Enc.Parameters.FullBytes, &iv); err != nil || len(rest) != 0 || len(iv) != aes.BlockSize {
		return nil, errBadStructure
	}
	if len(epki.Data) == 0 || len(epki.Data)%aes.BlockSize != 0 {
		return nil, errBadStructure
	}
	key, err := pbkdf2.Key(sha256.New, string(password), kp.Salt, kp.Iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadStructure, err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(epki.Data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, epki.Data)
	pad := int(out[len(out)-1])
	if pad < 1 || pad > aes.BlockSize {
		return nil, ErrBadPassword
	}
	for _, b := range out[len(out)-pad:] {
		if int(b) != pad {
			return nil, ErrBadPassword
		}
	}
	return out[:len(out)-pad], nil
}
