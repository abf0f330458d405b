package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"

	"golang.org/x/term"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/keys"
)

// The RA desk's check of a person's national ID card, shared by `mohr card enrol` and `mohr remote enrol`:
// the card's authentication certificate must chain to the national ID card issuers (--id-issuers) and the
// card must answer a fresh challenge (VERIFY with the holder's PIN, then INTERNAL AUTHENTICATE) with that
// certificate's key; then its holder data says whose card it is.

// idCardPINSource asks the national ID card's PIN: --id-pin-file, else env MOHR_ID_CARD_PIN, else a prompt
// without echo. The PIN goes only to the card (VERIFY); it is never logged, stored or sent anywhere else.
func idCardPINSource(pinFile string) keys.PINFunc {
	return func(_ context.Context, prompt string) ([]byte, error) {
		if pinFile != "" {
			b, err := os.ReadFile(pinFile)
			if err != nil {
				return nil, fmt.Errorf("read --id-pin-file: %w", err)
			}
			pin := append([]byte(nil), bytes.TrimRight(b, "\r\n")...)
			clear(b)
			return pin, nil
		}
		if v := os.Getenv("MOHR_ID_CARD_PIN"); v != "" {
			return []byte(v), nil
		}
		fd := int(os.Stdin.Fd())
		if !term.IsTerminal(fd) {
			return nil, errors.New("no national ID card PIN: stdin is not a terminal; use --id-pin-file or MOHR_ID_CARD_PIN")
		}
		fmt.Fprintf(os.Stderr, "%s: ", prompt)
		pin, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		return pin, err
	}
}

// idIssuerPool reads the national ID card issuers' CA certificates (--id-issuers).
func idIssuerPool(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, errors.New("no --id-issuers: give the national ID card issuers' CA certificates (PEM), so that the physician's national ID card can be checked")
	}
	issuers, err := readCerts(file)
	if err != nil || len(issuers) == 0 {
		return nil, fmt.Errorf("--id-issuers %s holds no PEM certificate (%v)", file, pathErrOrNil(err))
	}
	pool := x509.NewCertPool()
	for _, c := range issuers {
		pool.AddCert(c)
	}
	return pool, nil
}

// nationalIDCheck is the outcome of a passed check: whose card, and the evidence for the audit log.
type nationalIDCheck struct {
	Holder *cardreader.Holder
	Reader string
	// Cert is the card's authentication certificate that answered the challenge.
	Cert *x509.Certificate
}

// Evidence is the check as the enrolment's audit event records it (no secret: the certificate is public).
func (c *nationalIDCheck) Evidence() map[string]any {
	sum := sha256.Sum256(c.Cert.Raw)
	return map[string]any{
		"method":                 "national ID card: certificate chained to the card issuers, INTERNAL AUTHENTICATE over a fresh challenge verified",
		"reader":                 c.Reader,
		"cardNumber":             c.Holder.CardNumber,
		"nationalCode":           c.Holder.NationalCode,
		"cardCertificateSHA256":  hex.EncodeToString(sum[:]),
		"cardCertificateSerial":  c.Cert.SerialNumber.Text(16),
		"cardCertificateIssuer":  c.Cert.Issuer.String(),
		"cardCertificateSubject": c.Cert.Subject.String(),
	}
}

// checkNationalIDCard finds the national ID card (in reader, or in any reader), proves it genuine against
// issuers and reads its holder. The refusals are instructions for the RA officer.
func checkNationalIDCard(ctx context.Context, pc *cardreader.Context, reader string, issuers *x509.CertPool, pin keys.PINFunc, progress io.Writer) (*nationalIDCheck, error) {
	idCard, err := findCard(ctx, pc, reader, cardreader.ProfileNationalID, "national ID card")
	if err != nil {
		return nil, err
	}
	defer idCard.Close()
	nid, err := cardreader.NationalID(ctx, idCard, cardreader.DefaultNationalIDProfile())
	if err != nil {
		return nil, fmt.Errorf("the national ID card cannot be read: %v", err)
	}
	cert, err := nid.Authenticate(ctx, issuers, pin)
	if err != nil {
		if pe := cardPINError(err, "nothing was sent"); pe != nil {
			return nil, fmt.Errorf("national ID card: %w", pe)
		}
		if errors.Is(err, cardreader.ErrNotGenuine) {
			return nil, errors.New("the national ID card failed its authenticity check (its certificate does not chain to --id-issuers, or it did not prove its key): do not enrol; check --id-issuers")
		}
		return nil, fmt.Errorf("the national ID card's authenticity check failed: %v", err)
	}
	person, err := nid.ReadHolder(ctx)
	if err != nil {
		return nil, fmt.Errorf("the national ID card's holder data cannot be read: %v", err)
	}
	fmt.Fprintf(progress, "national ID card %s: genuine; holder %s %s, national code %s\n", idCard.Reader(), person.GivenName, person.FamilyName, person.NationalCode)
	return &nationalIDCheck{Holder: person, Reader: idCard.Reader(), Cert: cert}, nil
}

// cardAnswer is the national ID card's answer to a challenge the exchange issued, as the RA routes take it.
type cardAnswer struct {
	ChallengeID string `json:"challengeId"`
	Certificate string `json:"certificate"`
	Signature   string `json:"signature"`
}

// serverCardChallenge asks the exchange for a one-use card challenge (POST /v1/remote/card-challenges, bound
// to this RA officer), has the national ID card (in reader, or in any reader) sign it after its PIN, and
// returns the answer for the exchange, the card's certificate and its holder data. The exchange checks the
// answer itself; nothing here is trusted by it.
func serverCardChallenge(ctx context.Context, f *remoteFlags, pc *cardreader.Context, reader string, pin keys.PINFunc, purpose, credID string) (cardAnswer, []byte, *x509.Certificate, *cardreader.Holder, error) {
	var ch struct {
		ID        string `json:"id"`
		Challenge string `json:"challenge"`
	}
	if err := f.call(ctx, "POST", "/v1/remote/card-challenges", map[string]string{"purpose": purpose, "credentialId": credID}, "card challenge", &ch); err != nil {
		return cardAnswer{}, nil, nil, nil, err
	}
	challenge, err := base64.StdEncoding.DecodeString(ch.Challenge)
	if err != nil || len(challenge) == 0 {
		return cardAnswer{}, nil, nil, nil, errors.New("the exchange's card challenge cannot be read; is --server the exchange's API (port 8443)?")
	}
	idCard, err := findCard(ctx, pc, reader, cardreader.ProfileNationalID, "national ID card")
	if err != nil {
		return cardAnswer{}, nil, nil, nil, err
	}
	defer idCard.Close()
	nid, err := cardreader.NationalID(ctx, idCard, cardreader.DefaultNationalIDProfile())
	if err != nil {
		return cardAnswer{}, nil, nil, nil, fmt.Errorf("the national ID card cannot be read: %v", err)
	}
	cert, err := nid.Certificate(ctx)
	if err != nil {
		return cardAnswer{}, nil, nil, nil, fmt.Errorf("the national ID card's certificate cannot be read: %v", err)
	}
	holder, err := nid.ReadHolder(ctx)
	if err != nil {
		return cardAnswer{}, nil, nil, nil, fmt.Errorf("the national ID card's holder data cannot be read: %v", err)
	}
	sig, err := nid.SignChallenge(ctx, pin, challenge)
	if err != nil {
		if pe := cardPINError(err, "nothing was sent"); pe != nil {
			return cardAnswer{}, nil, nil, nil, fmt.Errorf("national ID card: %w", pe)
		}
		return cardAnswer{}, nil, nil, nil, fmt.Errorf("the national ID card did not answer the challenge: %v", err)
	}
	return cardAnswer{ChallengeID: ch.ID, Certificate: base64.StdEncoding.EncodeToString(cert.Raw), Signature: base64.StdEncoding.EncodeToString(sig)},
		challenge, cert, holder, nil
}

// checkCardAnswerLocally is the RA desk's own check of a card's answer to the exchange's challenge: the
// certificate chains to issuers (--id-issuers) and the plain r||s signature verifies over SHA-256 of the
// challenge with its key. The exchange checks the same again against its own configured issuers.
func checkCardAnswerLocally(cert *x509.Certificate, issuers *x509.CertPool, challenge []byte, ans cardAnswer) error {
	refuse := errors.New("the national ID card failed its authenticity check (its certificate does not chain to --id-issuers, or it did not prove its key): do not enrol; check --id-issuers")
	if _, err := cert.Verify(x509.VerifyOptions{Roots: issuers, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return refuse
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	sig, err := base64.StdEncoding.DecodeString(ans.Signature)
	if !ok || err != nil || len(sig) != 64 {
		return refuse
	}
	h := sha256.Sum256(challenge)
	if !ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return refuse
	}
	return nil
}
