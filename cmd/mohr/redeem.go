package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/tokens"
)

// serverEnv names the exchange's API for facility-side commands.
const serverEnv = "MOHR_SERVER"

// readCode reads an enrolment code from --code, --code-file or MOHR_ENROLMENT_CODE, in that order.
func readCode(code, codeFile string) (string, error) {
	if code == "" && codeFile != "" {
		b, err := os.ReadFile(codeFile)
		if err != nil {
			return "", fmt.Errorf("cannot read the enrolment code file %s: %v", codeFile, pathErr(err))
		}
		code = string(b)
	}
	if code == "" {
		code = os.Getenv("MOHR_ENROLMENT_CODE")
	}
	code = strings.TrimSpace(code)
	if code == "" {
		return "", errors.New("no enrolment code: give the code the RA handed over with --code HIX-..., --code-file FILE or the MOHR_ENROLMENT_CODE environment variable")
	}
	return code, nil
}

// pathErr strips Go's "open PATH:" prefix from a file error, leaving the cause a person can act on.
func pathErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(pe.Err, os.ErrNotExist):
			return "no such file"
		case errors.Is(pe.Err, os.ErrPermission):
			return "permission denied"
		}
		return pe.Err.Error()
	}
	return err.Error()
}

// exchangeClient is an HTTPS client for the exchange's API that trusts only the roots in caBundle.
func exchangeClient(caBundle string, timeout time.Duration) (*http.Client, error) {
	if caBundle == "" {
		return nil, errors.New("no --ca-bundle: fetch the exchange's root certificate first, for example\n  curl -o root.pem http://EXCHANGE:8080/ca/root.pem\nand check its fingerprint with the RA (openssl x509 -in root.pem -noout -fingerprint -sha256)")
	}
	b, err := os.ReadFile(caBundle)
	if err != nil {
		return nil, fmt.Errorf("cannot read --ca-bundle %s: %s", caBundle, pathErr(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--ca-bundle %s holds no PEM certificate: it must be the exchange's root in PEM (http://EXCHANGE:8080/ca/root.pem)", caBundle)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: timeout, Proxy: http.ProxyFromEnvironment}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// serverURL checks --server and joins path to it.
func serverURL(server, path string) (string, error) {
	if server == "" {
		server = os.Getenv(serverEnv)
	}
	if server == "" {
		return "", fmt.Errorf("no --server: give the exchange's API address, for example --server https://hix.example:8443 (or set %s)", serverEnv)
	}
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("--server %q is not an https:// address of the exchange's API (for example https://hix.example:8443)", server)
	}
	return strings.TrimRight(server, "/") + path, nil
}

// problemDoc is the part of an RFC 9457 problem document a person needs.
type problemDoc struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// exchangeError turns an HTTP answer that is not a success into a sentence for a person.
func exchangeError(what string, resp *http.Response, body []byte) error {
	var p problemDoc
	if json.Unmarshal(body, &p) != nil || p.Title == "" {
		return fmt.Errorf("%s: the exchange answered %s", what, resp.Status)
	}
	msg := fmt.Sprintf("%s: %s (HTTP %d)", what, p.Title, resp.StatusCode)
	if p.Detail != "" {
		msg += ": " + p.Detail
	}
	return errors.New(msg)
}

// transportError explains a failed request to the exchange.
func transportError(what, server string, err error) error {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &ua):
		return fmt.Errorf("%s: the server at %s is not signed by the root in --ca-bundle: check --server, and fetch the root again from the exchange (/ca/root.pem)", what, server)
	case errors.As(err, &hn):
		return fmt.Errorf("%s: the server's certificate is not for the host in --server (%s): use the name the exchange's certificate was issued for", what, server)
	case errors.As(err, &ci):
		return fmt.Errorf("%s: the server's certificate is not valid now (expired, or this machine's clock is wrong)", what)
	case errors.As(err, &oe) && oe.Op == "dial":
		return fmt.Errorf("%s: nothing answers at %s: check --server and that the exchange (mohr serve) is running", what, server)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%s: the exchange at %s did not answer in time; try again later", what, server)
	}
	return fmt.Errorf("%s: cannot talk to the exchange at %s (%v)", what, server, err)
}

// enrolAnswer is the part of POST /v1/enrolment's answer the command uses.
type enrolAnswer struct {
	ID       string    `json:"id"`
	SIAMID   string    `json:"siamId"`
	Kind     string    `json:"kind"`
	NotAfter time.Time `json:"notAfter"`
	ChainPEM string    `json:"chainPem"`
}

func redeemCode(ctx context.Context, c *http.Client, endpoint, code string, csrDER []byte, kind string) (*enrolAnswer, error) {
	apiKind := "software"
	if kind == string(tokens.KindPhysical) || kind == "physical" {
		apiKind = "physical"
	}
	body, _ := json.Marshal(map[string]any{"code": code, "csr": csrDER, "kind": apiKind})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, transportError("enrolment", endpoint, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return nil, exchangeError("enrolment refused", resp, rb)
	}
	var a enrolAnswer
	if err := json.Unmarshal(rb, &a); err != nil || a.ChainPEM == "" {
		return nil, errors.New("enrolment: the exchange's answer holds no certificate chain; is --server the exchange's API (port 8443)?")
	}
	return &a, nil
}

func newTokenRedeemCmd() *cobra.Command {
	var server, caBundle, code, codeFile, csrPath, kind, out string
	c := &cobra.Command{
		Use:   "redeem",
		Short: "Redeem the enrolment code over the network: send the CSR, get the certificate and its whole chain (facility)",
		Long: `Redeem the one-time enrolment code the RA handed over: the CSR from 'mohr token keygen' goes to the
exchange's POST /v1/enrolment, and the issued certificate comes back with its whole chain (leaf, intermediate,
root), written to --chain-out for 'mohr token install' and 'mohr adapter run'. The code never goes back to the RA.`,
		Example: `  mohr token redeem --server https://hix.example:8443 --ca-bundle root.pem --code-file code.txt \
      --csr adapter.csr --kind pkcs11 --chain-out chain.pem`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if kind != string(tokens.KindPhysical) && kind != string(tokens.KindSoftware) {
				return fmt.Errorf("--kind %q: use pkcs11 (key on a hardware token) or software (key in an encrypted file)", kind)
			}
			cd, err := readCode(code, codeFile)
			if err != nil {
				return err
			}
			endpoint, err := serverURL(server, "/v1/enrolment")
			if err != nil {
				return err
			}
			csr, err := readCSR(csrPath)
			if err != nil {
				return fmt.Errorf("cannot read the certificate request %s: %s; make it with mohr token keygen --csr-out %s", csrPath, csrErr(err), csrPath)
			}
			cl, err := exchangeClient(caBundle, 30*time.Second)
			if err != nil {
				return err
			}
			a, err := redeemCode(ctx, cl, endpoint, cd, csr.Raw, kind)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, []byte(a.ChainPEM), 0o644); err != nil {
				return fmt.Errorf("cannot write %s: %s", out, pathErr(err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issued token %s to %s (%s), valid until %s\nwrote %s (certificate, intermediate, root)\n",
				a.ID, a.SIAMID, kind, a.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), out)
			return nil
		},
	}
	c.Flags().StringVar(&server, "server", "", "the exchange's API, https://HOST:8443 (or env "+serverEnv+")")
	c.Flags().StringVar(&caBundle, "ca-bundle", "", "the exchange's root certificate, PEM (from http://HOST:8080/ca/root.pem)")
	c.Flags().StringVar(&code, "code", "", "the enrolment code HIX-... (or --code-file, or env MOHR_ENROLMENT_CODE)")
	c.Flags().StringVar(&codeFile, "code-file", "", "file holding the enrolment code")
	c.Flags().StringVar(&csrPath, "csr", "adapter.csr", "the PKCS#10 request from mohr token keygen (PEM or DER)")
	c.Flags().StringVar(&kind, "kind", string(tokens.KindPhysical), "token kind: pkcs11 or software")
	c.Flags().StringVar(&out, "chain-out", "chain.pem", "write the certificate and its whole chain here (PEM)")
	return c
}

// csrErr explains a CSR that cannot be read.
func csrErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pathErr(err)
	}
	return "not a PKCS#10 certificate request"
}
