package tokens_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/mohr-hix/mohr/adapter"
	"github.com/mohr-hix/mohr/hsm"
	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/tokens"
)

const physicalLabel = "HIXAdapter"

// TestMain prepares the SoftHSM token and lowers the PBKDF2 work factor so the suite stays quick under -race;
// TestKeystoreDefaultIterations checks the production setting.
func TestMain(m *testing.M) {
	tokens.PBKDF2Iterations = 10000
	tokens.PKCS12Iterations = 2048
	os.Exit(testenv.SoftHSMMain(m, physicalLabel))
}

// The hsm package's Opener is the KeyDevice of physical tokens.
var _ tokens.KeyDevice = (*hsm.Opener)(nil)

// TestPhysicalTokenSoftHSM enrols a physical token: the key is generated on the (Soft)HSM, never leaves it,
// signs the CSR there, and the issued certificate is written back beside it; pkcs11-tool sees both.
func TestPhysicalTokenSoftHSM(t *testing.T) {
	module, pin := testenv.SoftHSM(t, physicalLabel)
	ctx := context.Background()
	fx := newFixture(t)
	op := hsm.NewOpener(module)
	defer op.Close()
	uri := "pkcs11:token=" + physicalLabel + ";object=hix-adapter?pin-value=" + pin
	code, _, err := fx.svc.NewEnrolmentCode(ctx, "SIAM-1001", "ra:officer")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := tokens.EnrolPhysical(ctx, op, uri, rand.Reader, "SIAM-1001", "Imam Hospital adapter",
		func(ctx context.Context, csr *x509.CertificateRequest) (*tokens.Issued, error) {
			return fx.svc.Enrol(ctx, tokens.EnrolRequest{Code: code, CSR: csr, Kind: tokens.KindPhysical, Actor: "facility"})
		})
	if err != nil {
		t.Fatal(err)
	}
	if iss.Token.Kind != tokens.KindPhysical {
		t.Fatalf("kind %s", iss.Token.Kind)
	}
	back, err := op.Certificate(ctx, uri)
	if err != nil || !back.Equal(iss.Cert) {
		t.Fatalf("certificate on the token: %v", err)
	}
	// The key on the token signs for the certificate (what the adapter's TLS handshake needs).
	signer, err := op.OpenSigner(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	if !iss.Cert.PublicKey.(*ecdsa.PublicKey).Equal(signer.Public()) {
		t.Fatal("token key does not match the certificate")
	}
	// The token key does the TLS 1.3 client handshake through a Gateway (CertificateVerify signed on the device).
	gw := &adapter.Gateway{Roots: fx.ca.Pool(), Intermediate: fx.ca.Intermediate, Clock: fx.clock.Now,
		Revocation: adapter.RevocationCheckerFunc(func(context.Context, *x509.Certificate, *x509.Certificate) (adapter.RevocationStatus, error) {
			return adapter.RevocationStatus{}, nil
		}),
		Standing: tokens.Standing{Registry: fx.store, Clock: fx.clock.Now},
		Upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Header.Get(adapter.HeaderSIAMID)) }),
	}
	srv := httptest.NewUnstartedServer(gw)
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	defer srv.Close()
	tc := tls.Certificate{PrivateKey: signer, Certificate: [][]byte{iss.Cert.Raw, iss.Chain[0].Raw}}
	client := srv.Client()
	client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{tc}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "SIAM-1001" {
		t.Fatalf("gateway with the physical token: %d %q", resp.StatusCode, body)
	}

	tool := testenv.Tool(t, "pkcs11-tool")
	out, err := exec.Command(tool, "--module", module, "--token-label", physicalLabel, "--login", "--pin", pin, "-O").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{"Private Key Object; EC", "Certificate Object; type = X.509 cert", "label:      hix-adapter"} {
		if !strings.Contains(s, want) {
			t.Errorf("pkcs11-tool -O lacks %q:\n%s", want, s)
		}
	}
	t.Logf("pkcs11-tool -O:\n%s", s)
}
