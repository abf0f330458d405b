package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mohr-hix/mohr/api"
	"github.com/mohr-hix/mohr/signing"
)

// apiRegistry is signing.PhysicianRegistry over the exchange's API (GET
// /v1/registry/physicians/{councilNumber}/history with the caller's client certificate): `mohr verify
// --registry` judges each prescriber's registration at the signature's best signature time by the same history
// the exchange uses, so the CLI and the server agree after a suspension. Answers are kept for the run (one
// request per council number); a failed request is not kept, so a later document asks again.
type apiRegistry struct {
	c    *http.Client
	base string

	mu    sync.Mutex
	cache map[string]*regEntry
}

type regEntry struct {
	once sync.Once
	reg  signing.Registration
	err  error
}

// errRegistryUnreachable: the exchange's registry did not answer (TRY_LATER for the document).
var errRegistryUnreachable = errors.New("mohr: the exchange's registry did not answer")

func (a *apiRegistry) Registration(ctx context.Context, councilNo string) (signing.Registration, error) {
	a.mu.Lock()
	e := a.cache[councilNo]
	if e == nil {
		e = &regEntry{}
		a.cache[councilNo] = e
	}
	a.mu.Unlock()
	e.once.Do(func() { e.reg, e.err = a.fetch(ctx, councilNo) })
	if e.err != nil && !errors.Is(e.err, signing.ErrUnknownPhysician) {
		a.mu.Lock()
		if a.cache[councilNo] == e {
			delete(a.cache, councilNo) // a transient failure: ask again for the next document
		}
		a.mu.Unlock()
	}
	return e.reg, e.err
}

func (a *apiRegistry) fetch(ctx context.Context, councilNo string) (signing.Registration, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", a.base+"/v1/registry/physicians/"+url.PathEscape(councilNo)+"/history", nil)
	if err != nil {
		return signing.Registration{}, err
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return signing.Registration{}, fmt.Errorf("%w: %v", errRegistryUnreachable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return signing.Registration{}, fmt.Errorf("%w: %v", errRegistryUnreachable, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return signing.Registration{}, signing.ErrUnknownPhysician
	default:
		return signing.Registration{}, fmt.Errorf("%w: %v", errRegistryUnreachable, exchangeError("registry", resp, body))
	}
	var h api.RegistrationHistory
	if err := json.Unmarshal(body, &h); err != nil || h.CouncilNumber != councilNo || len(h.History) == 0 {
		return signing.Registration{}, fmt.Errorf("%w: the answer for %s is not a registration history", errRegistryUnreachable, councilNo)
	}
	reg := signing.Registration{CouncilNumber: h.CouncilNumber, NationalCode: h.NationalCode, Name: h.Name, Specialty: h.Specialty,
		Status: h.Status, ValidFrom: h.ValidFrom, ValidUntil: h.ValidUntil}
	for _, e := range h.History {
		reg.History = append(reg.History, signing.Standing{EffectiveAt: e.EffectiveAt, Status: e.Status, ValidFrom: e.ValidFrom, ValidUntil: e.ValidUntil})
	}
	return reg, nil
}

// notConsulted stands for the registry when `mohr verify` was given none: every document that reaches the
// registration check is INDETERMINATE/TRY_LATER ("not consulted"), never TOTAL_PASSED (fail closed).
type notConsulted struct{}

func (notConsulted) Registration(context.Context, string) (signing.Registration, error) {
	return signing.Registration{}, signing.ErrRegistryNotConsulted
}

// registryClient is an mTLS client of the exchange's API: the server is checked against caBundle, the caller
// presents certFile and keyFile (a PEM key file, or a key URI such as pkcs11:... for a key in a token).
func registryClient(ctx context.Context, server, caBundle, certFile, keyRef string, timeout time.Duration) (*apiRegistry, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("verify: --registry %q is not an https:// address of the exchange's API (for example https://hix.example:8443)", server)
	}
	if certFile == "" || keyRef == "" {
		return nil, errors.New("verify: --registry needs the insurer's API credential: --cert FILE and --key FILE (or a key URI)")
	}
	c, err := exchangeClient(caBundle, timeout)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("verify: cannot read --cert %s: %s", certFile, pathErr(err))
	}
	var chain [][]byte
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("verify: --cert %s holds no PEM certificate", certFile)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("verify: --cert %s: %v", certFile, err)
	}
	uri := keyRef
	if !strings.Contains(keyRef, ":") || strings.HasPrefix(keyRef, "/") || strings.HasPrefix(keyRef, ".") {
		uri = "file:" + keyRef
	}
	key, err := newKeyResolver().Signer(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("verify: --key: %w", err)
	}
	tr := c.Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = true // full duplex: a batch's answers stream back while its lines are still sent
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: chain, PrivateKey: key, Leaf: leaf}}
	return &apiRegistry{c: c, base: strings.TrimRight(server, "/"), cache: map[string]*regEntry{}}, nil
}

// whoami checks the credential before the run: a refused credential fails the command rather than making
// every document TRY_LATER.
func (a *apiRegistry) whoami(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", a.base+"/v1/whoami", nil)
	if err != nil {
		return "", err
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return "", transportError("verify --registry", a.base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", exchangeError("verify --registry: the exchange refused the credential", resp, body)
	}
	var w struct {
		Role string `json:"role"`
	}
	_ = json.Unmarshal(body, &w)
	return w.Role, nil
}
