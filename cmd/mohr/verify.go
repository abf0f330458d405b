package main

import (
	"context"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/pades"
)

func init() { rootCmd.AddCommand(newVerifyCmd()) }

// newVerifyCmd is "mohr verify": bulk verification of HIX-Rx-CAdES signatures for insurers and auditors.
func newVerifyCmd() *cobra.Command {
	var roots, tsaRoots, format string
	var signerCAs, tsaCerts, policies []string
	var workers, gogc int
	var ocspOnline, noRegistry bool
	var at, registry, caBundle, certFile, keyRef string
	var server, outFile string
	var resume bool
	cmd := &cobra.Command{
		Use:   "verify [--registry URL|--no-registry|--server URL] [--cert FILE --key FILE --ca-bundle FILE] [--roots FILE] [--signer-cas FILE] [--tsa-cert FILE]... [--format json|csv|text] FILES|DIRS|-",
		Short: "Verify signed prescriptions and signed PDF printouts (files, directories, or NDJSON on stdin with -)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "json" && format != "csv" && format != "text" {
				return fmt.Errorf("verify: --format must be json, csv or text, not %q", format)
			}
			if server != "" {
				// On the exchange: its registry, its revocation data; the results are the server's lines.
				if registry != "" || noRegistry {
					return errors.New("verify: with --server the exchange consults its own registry: drop --registry/--no-registry")
				}
				c, err := registryClient(cmd.Context(), server, caBundle, certFile, keyRef, 0)
				if err != nil {
					return err
				}
				c.c.Transport.(*http.Transport).ResponseHeaderTimeout = 5 * time.Minute
				if _, err := c.whoami(cmd.Context()); err != nil {
					return err
				}
				rb := &remoteBatch{c: c, inputs: args, out: outFile, resume: resume}
				sum, err := rb.run(cmd.Context(), cmd.ErrOrStderr())
				printSummary(cmd.ErrOrStderr(), sum)
				if err != nil {
					return err
				}
				if st := sum.Stats(); st.Passed != st.Total || len(sum.InputErrors) > 0 {
					return &exitError{code: 2, err: fmt.Errorf("verify: %d of %d documents did not pass", st.Total-st.Passed, st.Total)}
				}
				return nil
			}
			if outFile != "" || resume {
				return errors.New("verify: --out and --resume go with --server (batch verification on the exchange)")
			}
			// The trust policy: the configuration's validation section over the data directory's CA and
			// TSA, with the flags replacing what they name.
			conf, err := loadConfig()
			if err != nil {
				return err
			}
			vc := conf.Validation
			if roots != "" {
				vc.TrustAnchors = []string{roots}
			}
			if tsaRoots != "" {
				vc.TrustAnchors = append(vc.TrustAnchors, tsaRoots)
			}
			if len(signerCAs) > 0 {
				vc.SignerCAs = signerCAs
			}
			if len(policies) > 0 {
				vc.PrescriberPolicies = policies
			}
			if len(tsaCerts) > 0 {
				vc.TSAs = nil
				for _, f := range tsaCerts {
					vc.TSAs = append(vc.TSAs, TSAConfigEntry{Cert: f})
				}
			}
			trust, err := vc.trustPolicy(conf, dataDirTrustDefaults(conf))
			if err != nil {
				return fmt.Errorf("verify: %w (flags --roots, --signer-cas, --prescriber-policy, --tsa-cert)", err)
			}
			// Fetched OCSP answers and CRLs are kept per certificate and URL until their nextUpdate, by the wall
			// clock even under --at: a batch from one signer costs one lookup.
			cfg := signing.VerifierConfig{Trust: trust, RevocationCache: 100000, CacheClock: time.Now}
			if at != "" { // validate as of a past time (an auditor's question: "was it valid then?")
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return fmt.Errorf("verify: --at must be an RFC 3339 time: %w", err)
				}
				cfg.Now = func() time.Time { return t }
			}
			if ocspOnline {
				cfg.Revocation = &signing.HTTPRevocation{Timeout: 10 * time.Second}
				cfg.CRLs = &signing.HTTPCRLs{Timeout: 10 * time.Second}
			}
			// The council registry (docs/signature-policy.md §5.9): the exchange's, over the API with the caller's
			// credential; or explicitly none (--no-registry: the registration is "not checked"); by default the
			// result says it is incomplete (INDETERMINATE/TRY_LATER, "not consulted"), never TOTAL_PASSED.
			switch {
			case registry != "" && noRegistry:
				return errors.New("verify: --registry and --no-registry exclude each other")
			case registry != "":
				reg, err := registryClient(cmd.Context(), registry, caBundle, certFile, keyRef, 30*time.Second)
				if err != nil {
					return err
				}
				if _, err := reg.whoami(cmd.Context()); err != nil {
					return err
				}
				cfg.Registry = reg
			case noRegistry:
				fmt.Fprintln(os.Stderr, "verify: --no-registry: the prescribers' council registration is NOT checked; a TOTAL_PASSED here does not say the prescriber was registered")
			default:
				cfg.Registry = notConsulted{}
			}
			if gogc != 0 {
				debug.SetGCPercent(gogc)
			}
			v, err := signing.NewVerifier(cfg)
			if err != nil {
				return err
			}
			bv := &signing.BatchVerifier{Verifier: v, Workers: workers}
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			var st signing.BatchStats
			if len(args) == 1 && args[0] == "-" {
				if st, err = bv.VerifyNDJSON(ctx, cmd.InOrStdin(), out); err != nil {
					return err
				}
			} else {
				files, err := verifyExpand(args)
				if err != nil {
					return err
				}
				var bar *progressbar.ProgressBar
				if term.IsTerminal(int(os.Stderr.Fd())) {
					bar = progressbar.NewOptions(len(files), progressbar.OptionSetWriter(os.Stderr),
						progressbar.OptionSetDescription("verifying"), progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond))
				}
				w := newReportWriter(format, out)
				files, err = verifyPDFs(ctx, v, files, func(r *signing.Report) { w.write(r); st.Add(r) })
				if err != nil {
					return err
				}
				var cst signing.BatchStats
				cst, err = bv.VerifyFiles(ctx, files, func(r *signing.Report) {
					w.write(r)
					if bar != nil {
						bar.Add(1)
					}
				})
				st.Total, st.Passed, st.Failed, st.Indeterminate = st.Total+cst.Total, st.Passed+cst.Passed, st.Failed+cst.Failed, st.Indeterminate+cst.Indeterminate
				if bar != nil {
					bar.Finish()
					fmt.Fprintln(os.Stderr)
				}
				if err2 := w.close(); err == nil {
					err = err2
				}
				if err != nil {
					return err
				}
			}
			fmt.Fprintf(os.Stderr, "%d verified: %d passed, %d failed, %d indeterminate\n", st.Total, st.Passed, st.Failed, st.Indeterminate)
			if cfg.Registry == (notConsulted{}) && st.Indeterminate > 0 {
				fmt.Fprintln(os.Stderr, "verify: the council registry was not consulted, so no prescription can pass: give --registry https://EXCHANGE:8443 with --cert/--key/--ca-bundle, or --no-registry to accept an unchecked registration")
			}
			if st.Passed != st.Total {
				return &exitError{code: 2, err: fmt.Errorf("verify: %d of %d documents did not pass", st.Total-st.Passed, st.Total)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&roots, "roots", "", "trust anchors (PEM; default: validation.trust_anchors, else the data directory's CA)")
	f.StringVar(&tsaRoots, "tsa-roots", "", "more trust anchors, for time-stamping authorities (PEM)")
	f.StringSliceVar(&signerCAs, "signer-cas", nil, "CAs allowed to issue prescribers' certificates (PEM; default: validation.signer_cas, else the data directory's intermediate)")
	f.StringSliceVar(&tsaCerts, "tsa-cert", nil, "trusted TSA certificate (PEM; repeatable; default: validation.tsas, else the data directory's TSA)")
	f.StringSliceVar(&policies, "prescriber-policy", nil, "physician-signing certificate policy OID (default: validation.prescriber_policies, else the CA profile's)")
	f.StringVar(&format, "format", "text", "output: json (one report per line), csv or text")
	f.StringVar(&at, "at", "", "validation time (RFC 3339; default now)")
	f.IntVar(&workers, "workers", 0, "verification workers (default: one per core)")
	f.IntVar(&gogc, "gogc", 400, "garbage-collector target percentage for the run (see docs/signing.md)")
	f.StringVar(&registry, "registry", "", "the exchange's API (https://HOST:8443): check each prescriber's council registration at the signing time there, with --cert/--key")
	f.StringVar(&caBundle, "ca-bundle", "", "with --registry: the exchange's root certificate (PEM)")
	f.StringVar(&certFile, "cert", "", "with --registry: the caller's API certificate (PEM; role insurer, pharmacy, auditor or operator)")
	f.StringVar(&keyRef, "key", "", "with --registry: its private key (PEM file or key URI)")
	f.StringVar(&server, "server", "", "verify on the exchange (https://HOST:8443, POST /v1/verify/batch) with --cert/--key/--ca-bundle; FILES are .p7s files, directories, or one .ndjson file")
	f.StringVar(&outFile, "out", "", "with --server: write the result lines (NDJSON, numbered, then a summary line) to this file")
	f.BoolVar(&resume, "resume", false, "with --server and --out: continue an interrupted batch after the last whole result line in --out")
	f.BoolVar(&noRegistry, "no-registry", false, "accept an unchecked council registration (without it and without --registry every prescription is INDETERMINATE/TRY_LATER)")
	f.BoolVar(&ocspOnline, "ocsp", false, "ask OCSP responders and CRL distribution points when a signature embeds no usable revocation data")
	return cmd
}

func verifyPool(path string) (*x509.CertPool, error) {
	certs, err := readCerts(path)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p, nil
}

// verifyExpand turns FILES and DIRS into a list of files (directories are walked; hidden files skipped).
func verifyExpand(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		if !fi.IsDir() {
			files = append(files, a)
			continue
		}
		err = filepath.WalkDir(a, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
	}
	return files, nil
}

type reportWriter struct {
	format string
	w      io.Writer
	enc    *json.Encoder
	csv    *csv.Writer
	err    error
}

func newReportWriter(format string, w io.Writer) *reportWriter {
	rw := &reportWriter{format: format, w: w}
	switch format {
	case "json":
		rw.enc = json.NewEncoder(w)
	case "csv":
		rw.csv = csv.NewWriter(w)
		rw.csv.Write(csvColumns)
	}
	return rw
}

func (rw *reportWriter) write(r *signing.Report) {
	if rw.err != nil {
		return
	}
	switch rw.format {
	case "json":
		rw.err = rw.enc.Encode(r)
	case "csv":
		rw.err = rw.csv.Write(csvRow(r))
	default:
		_, rw.err = fmt.Fprintln(rw.w, r.Summary())
	}
}

// csvColumns are the CSV output's columns (docs/insurers.md): the first eight as before, then what a claim is
// matched on.
var csvColumns = []string{"name", "indication", "subIndication", "level", "bestSignatureTime", "signer", "councilNumber", "reason",
	"contentSha256", "patientNationalCode", "prescriptionId", "signerSerial", "timestampTime", "registration"}

func csvRow(r *signing.Report) []string {
	var signer, serial, council, patient, rxID, reg, ts, best string
	if r.Signer != nil {
		signer, serial = r.Signer.Subject, r.Signer.Serial
	}
	if p := r.Prescriber; p != nil {
		council, patient, rxID, reg = p.CouncilNumber, p.PatientCode, p.PrescriptionID, p.Registration
	}
	for _, t := range r.Timestamps {
		if t.Type == "signature" && t.Valid {
			ts = t.GenTime.UTC().Format(time.RFC3339)
			break
		}
	}
	if !r.BestSignatureTime.IsZero() {
		best = r.BestSignatureTime.UTC().Format(time.RFC3339)
	}
	return []string{r.Name, string(r.Indication), string(r.SubIndication), r.Level, best, signer, council, r.Reason,
		r.ContentSHA256, patient, rxID, serial, ts, reg}
}

func (rw *reportWriter) close() error {
	if rw.csv != nil {
		rw.csv.Flush()
		if rw.err == nil {
			rw.err = rw.csv.Error()
		}
	}
	if rw.err != nil {
		return fmt.Errorf("verify: write: %w", rw.err)
	}
	return nil
}

// verifyPDFs verifies the PDF files among files (PAdES, signing/pades.Verify; one report per signature) and
// returns the others.
func verifyPDFs(ctx context.Context, v *signing.Verifier, files []string, fn func(*signing.Report)) ([]string, error) {
	var rest []string
	for _, f := range files {
		if !strings.EqualFold(filepath.Ext(f), ".pdf") {
			rest = append(rest, f)
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		reports, err := pades.Verify(ctx, b, v)
		if err != nil {
			reports = []*signing.Report{{Indication: signing.TotalFailed, SubIndication: signing.FormatFailure, Reason: err.Error()}}
		}
		for _, r := range reports {
			r.Name = f + ": " + r.Name
			fn(r)
		}
	}
	return rest, nil
}
