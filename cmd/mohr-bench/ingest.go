package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// ingestSigner is one registered physician of the ingest scenario: a physician-signing key and certificate and
// the identity the prescriptions name.
type ingestSigner struct {
	key   crypto.Signer
	cert  *x509.Certificate
	chain []*x509.Certificate
	phy   rxgen.Physician
}

// loadSigners reads -signers: one physician a line, "key.pem cert.pem nationalCode councilNumber".
func loadSigners(o options) ([]ingestSigner, error) {
	if o.signers == "" || o.chain == "" {
		return nil, errors.New("ingest needs -signers and -chain")
	}
	inter, err := readCertPEM(o.chain)
	if err != nil {
		return nil, fmt.Errorf("-chain: %w", err)
	}
	f, err := os.Open(o.signers)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []ingestSigner
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 {
			continue
		}
		if len(fs) != 4 {
			return nil, fmt.Errorf("-signers: want \"key cert nationalCode council\", got %q", sc.Text())
		}
		key, err := readKeyPEM(fs[0])
		if err != nil {
			return nil, err
		}
		cert, err := readCertPEM(fs[1])
		if err != nil {
			return nil, err
		}
		out = append(out, ingestSigner{key: key, cert: cert, chain: []*x509.Certificate{cert, inter},
			phy: rxgen.Physician{NationalCode: fs[2], CouncilNumber: fs[3], Given: "Bench", Family: "Physician", Specialty: "General Practitioner"}})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("-signers: no physician")
	}
	return out, nil
}

// ingestRequests makes POST /v1/prescriptions requests, each a different B-B prescription (HIX-Rx-CAdES) signed
// in advance by one of the physicians in turn (a stored prescription is keyed by its content hash, so each
// request must be new). The pool is signed before the run so the client's signing does not compete with the
// server for the cores during the measurement; running out of it is an error, not a silent reuse.
func ingestRequests(o options, base string) (func(context.Context) (*http.Request, error), error) {
	signers, err := loadSigners(o)
	if err != nil {
		return nil, err
	}
	gen := rxgen.New(uint64(time.Now().UnixNano()))
	pool := make([][]byte, o.pool)
	for i := range pool {
		s := signers[i%len(signers)]
		body, err := gen.Prescription(s.phy)
		if err != nil {
			return nil, err
		}
		if pool[i], err = signing.Sign(context.Background(), body, signing.SignOptions{Signer: s.key, Chain: s.chain}); err != nil {
			return nil, fmt.Errorf("sign prescription: %w", err)
		}
	}
	var n atomic.Int64
	return func(ctx context.Context) (*http.Request, error) {
		i := n.Add(1) - 1
		if i >= int64(len(pool)) {
			return nil, fmt.Errorf("pool of %d signed prescriptions exhausted: raise -pool", len(pool))
		}
		req, err := http.NewRequestWithContext(ctx, "POST", base+"/v1/prescriptions", bytes.NewReader(pool[i]))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/cms")
		return req, nil
	}, nil
}

// bareOps names the bare cryptographic operations one ingestion needs, in the order bareIngest times them.
var bareOps = []string{"verify-signature", "verify-chain", "sign-tsa-token", "sign-ocsp-response", "sign-report-seal"}

// bareIngest is the baseline of the ingest scenario: per iteration, the bare ECDSA operations one ingestion
// needs and nothing else: verify the prescription's signature (P-256, SHA-256 digest), verify the signing
// certificate against its issuing CA (x509 CheckSignatureFrom), and three P-256 signatures (the TSA token, the
// fresh OCSP response, the seal of the validation report) with the -ca-key. opNanos gets each operation's
// summed time, so its share of the sum can be printed.
func bareIngest(o options, opNanos []atomic.Int64) (func() error, error) {
	signers, err := loadSigners(o)
	if err != nil {
		return nil, err
	}
	if o.caKey == "" {
		return nil, errors.New("bare-ingest needs -ca-key (the signing key of the TSA, responder and seal stand-in)")
	}
	caKey, err := readKeyPEM(o.caKey)
	if err != nil {
		return nil, err
	}
	s := signers[0]
	pub, ok := s.cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("bare-ingest: the physician key is not ECDSA")
	}
	digest := sha256.Sum256([]byte("signed attributes of a prescription"))
	sig, err := s.key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	var seq atomic.Uint64
	return func() error {
		t := time.Now()
		lap := func(i int) {
			now := time.Now()
			opNanos[i].Add(int64(now.Sub(t)))
			t = now
		}
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			return errors.New("bare verify failed")
		}
		lap(0)
		if err := s.cert.CheckSignatureFrom(s.chain[1]); err != nil {
			return err
		}
		lap(1)
		for i := 2; i < 5; i++ {
			d := sha256.Sum256(fmt.Appendf(nil, "%d-%d", i, seq.Add(1)))
			if _, err := caKey.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
				return err
			}
			lap(i)
		}
		return nil
	}, nil
}

func runBareIngest(o options) error {
	ops := make([]atomic.Int64, len(bareOps))
	fn, err := bareIngest(o, ops)
	if err != nil {
		return err
	}
	if o.warmup > 0 {
		loadLocal(fn, o.conc, o.warmup)
		for i := range ops {
			ops[i].Store(0)
		}
	}
	u0 := cpuTime()
	res := loadLocal(fn, o.conc, o.dur)
	cpu := cpuTime() - u0
	res.print(o)
	// CPU per iteration is the baseline that survives a loaded machine: other processes change how many
	// iterations a second this process gets, not what one costs.
	fmt.Printf("bare-ingest cpu_us_per_op=%.1f\n", float64(cpu.Microseconds())/float64(max(res.n, 1)))
	var total int64
	for i := range ops {
		total += ops[i].Load()
	}
	var b strings.Builder
	for i, name := range bareOps {
		fmt.Fprintf(&b, " %s=%.3f", name, float64(ops[i].Load())/float64(max(total, 1)))
	}
	fmt.Printf("bare-ingest shares of the summed operation time:%s\n", b.String())
	if res.errors > 0 {
		return fmt.Errorf("%d errors (first: %v)", res.errors, res.firstErr)
	}
	return nil
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func readCertPEM(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, _ := pem.Decode(b)
	if p == nil {
		return nil, fmt.Errorf("%s: no PEM", path)
	}
	return x509.ParseCertificate(p.Bytes)
}

func readKeyPEM(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, _ := pem.Decode(b)
	if p == nil {
		return nil, fmt.Errorf("%s: no PEM", path)
	}
	if k, err := x509.ParsePKCS8PrivateKey(p.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	} else if k, err := x509.ParseECPrivateKey(p.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("%s: not a PKCS#8 or SEC 1 signing key", path)
}
