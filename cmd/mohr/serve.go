package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/api"
	"github.com/mohr-hix/mohr/api/web"
	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/ca/revocation"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/offline"
	"github.com/mohr-hix/mohr/signing/remote"
	"github.com/mohr-hix/mohr/tokens"
	"github.com/mohr-hix/mohr/tokens/sqlstore"
)

func init() { rootCmd.AddCommand(newServeCmd()) }

func newServeCmd() *cobra.Command {
	var listen, publicListen, cpuProfile, memProfile, logLevel string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the CA, revocation, TSA, signing and token services behind the HTTP API",
		Long: "Run Mohr. With no configuration it uses SQLite in the data directory and, on first start, creates a\n" +
			"DEVELOPMENT root and intermediate. The API listens with mTLS on `listen`; CRLs, OCSP, the TSA, the CA\n" +
			"certificates and /healthz are also served over plain HTTP on `public_listen`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			// Several nodes of one cluster share one configuration and differ only in where they listen.
			if listen != "" {
				cfg.Listen = listen
			}
			if publicListen != "" {
				cfg.PublicListen = publicListen
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			if cpuProfile != "" { // scripts/bench-ingest.sh: where the server's CPU goes under load
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if memProfile != "" { // scripts/bench-ingest.sh: what the server allocated under load
				defer func() {
					if f, err := os.Create(memProfile); err == nil {
						_ = pprof.Lookup("allocs").WriteTo(f, 0)
						f.Close()
					}
				}()
			}
			return serve(cmd.Context(), cfg, log)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "this node's API address (overrides listen; the rest of the configuration is the cluster's)")
	cmd.Flags().StringVar(&publicListen, "public-listen", "", "this node's public address (overrides public_listen)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (debug adds the change feed's OCSP pre-signing lag)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) of the whole run to this file (benchmarks)")
	cmd.Flags().StringVar(&memProfile, "memprofile", "", "write an allocation profile (pprof allocs) of the whole run to this file at exit (benchmarks)")
	return cmd
}

// node is one running Mohr: every service, wired.
type node struct {
	cfg  *Config
	log  *slog.Logger
	st   appStore
	ts   *sqlstore.Store
	ca   *ca.CA
	crl  *revocation.CRLPublisher
	ocsp *revocation.Responder
	rev  *revocation.Service
	tsa  *signing.TSA
	// tsaCerts are the TSA certificates this node has stamped with, newest last: the default TSA trust list
	// trusts their keys (a rotation to a new key appends; an old key must stay trusted for old timestamps).
	tsaCerts []*x509.Certificate
	verifier *signing.Verifier
	tokens   *tokens.Service
	cp       *audit.Checkpointer
	audit    auditIdentity // the checkpoint key: cp and its verifier key
	vkeys    []string      // verifier keys of the log's history, the current one included
	id       string        // this process, in leases
	// feedFrom is the audit log's size before the node read any shared state: the change feed starts there,
	// so a change committed by another node while this one starts is applied, never skipped.
	feedFrom int64
	vs       atomic.Pointer[verifiers]
	seal     signing.Seal
	bundle   *offline.Publisher
	remote   *remote.Service // nil unless remote_signing is configured (remotewire.go)
	closers  []func() error

	// clientRev answers api's client-certificate revocation check from memory, kept current by changeFeed.
	clientRev *api.ClientRevocationCache
}

func (n *node) close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
}

// ensureDevCA creates the development hierarchy on first start when no CA is configured.
func ensureDevCA(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if _, err := os.Stat(cfg.CA.Cert); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if cfg.CA.Key != "" && !strings.HasPrefix(cfg.CA.Key, "file:") {
		return fmt.Errorf("no intermediate certificate at %s: run mohr ca init first", cfg.CA.Cert)
	}
	log.Warn("no CA yet: creating a DEVELOPMENT root and intermediate (never for production)", "dir", caDir(cfg))
	return caInitDev(ctx, cfg, "EC-P256", false)
}

// build wires every service of a node. It starts nothing.
func build(ctx context.Context, cfg *Config, log *slog.Logger) (*node, error) {
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return nil, err
	}
	n := &node{cfg: cfg, log: log, id: newNodeID()}
	if err := ensureDevCA(ctx, cfg, log); err != nil {
		return nil, err
	}
	var err error
	if n.st, err = openStore(ctx, cfg); err != nil {
		return nil, err
	}
	n.closers = append(n.closers, n.st.Close)
	fail := func(err error) (*node, error) { n.close(); return nil, err }
	if n.feedFrom, err = n.st.AuditSize(ctx); err != nil {
		return fail(err)
	}
	n.clientRev = api.NewClientRevocationCache(clientRevocation{n.st}, clientRevocationBound, cfg.clock())

	is, err := loadIssuer(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	ts, db, err := openTokenStore(ctx, cfg, n.st)
	if err != nil {
		return fail(fmt.Errorf("token store: %w", err))
	}
	n.ts = ts
	n.closers = append(n.closers, db.Close)
	if n.ca, err = openCA(ctx, n.st, is, cfg.CA.Issuance, ca.Options{RA: registryRA{ts}, Now: cfg.clock()}, "system:serve"); err != nil { // cakeys.go
		return fail(err)
	}
	if b, err := os.ReadFile(revokedMarker(cfg)); err == nil {
		n.ca.Suspend("the intermediate was revoked: " + strings.TrimSpace(string(b)))
		log.Warn("issuance is suspended: the intermediate was revoked under dual control", "marker", revokedMarker(cfg))
	}
	id, err := loadAuditIdentity(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	if err := recordAuditKey(ctx, n.st, id, "system:serve"); err != nil {
		return fail(err)
	}
	n.cp, n.audit = id.cp, id
	if n.vkeys, err = trustedVKeys(cfg, "", id.vkey); err != nil {
		return fail(err)
	}

	// Revocation: CRLs per shard and the OCSP responder with its delegated certificate.
	n.crl, err = revocation.NewCRLPublisher(revocation.CRLConfig{Issuer: is, Store: n.st, Shards: cfg.CA.Issuance.CRLShards,
		BaseURL: cfg.CA.Issuance.CRLBaseURL, OnError: func(shard int, err error) { log.Error("CRL", "shard", shard, "err", err) }})
	if err != nil {
		return fail(err)
	}
	ocspKey, err := serviceKey(ctx, cfg, "ocsp", cfg.Services.OCSPKey)
	if err != nil {
		return fail(err)
	}
	var sink revocation.Sink
	if cfg.Services.OCSPDir != "" {
		if sink, err = revocation.NewDirSink(cfg.Services.OCSPDir, is.Cert); err != nil {
			return fail(err)
		}
	}
	n.ocsp, err = revocation.NewResponder(revocation.ResponderConfig{Issuer: is, Store: n.st, Key: ocspKey, Sink: sink,
		Shards: cfg.CA.Issuance.CRLShards, Now: cfg.clock(), OnError: func(err error) { log.Error("OCSP", "err", err) },
		SignNonces: cfg.Services.OCSPSignNonces, SignUnknown: cfg.Services.OCSPSignUnknown,
		Issue: func(ctx context.Context, _ crypto.PublicKey, _, notAfter time.Time) (*x509.Certificate, error) {
			return issueFor(ctx, n.ca, ocspKey, ca.Request{Profile: ca.ProfileOCSPResponder, CommonName: "Mohr OCSP Responder", ValidUntil: notAfter})
		}})
	if err != nil {
		return fail(err)
	}
	n.rev = &revocation.Service{Store: n.st, CRL: n.crl, OCSP: n.ocsp}
	if _, err := n.wireRemote(ctx); err != nil { // remotewire.go
		return fail(fmt.Errorf("remote signing: %w", err))
	}

	// The TSA and the exchange's organisation seal.
	tsaKey, err := serviceKey(ctx, cfg, "tsa", cfg.Services.TSAKey)
	if err != nil {
		return fail(err)
	}
	tsaCert, err := serviceCert(ctx, cfg, n.ca, "tsa", tsaKey, ca.Request{Profile: ca.ProfileTSA, CommonName: "Mohr Time-Stamping Authority"})
	if err != nil {
		return fail(err)
	}
	n.tsaCerts = []*x509.Certificate{tsaCert}
	chain := is.Chain[:len(is.Chain)-1]
	if n.tsa, err = signing.NewTSA(tsaKey, append([]*x509.Certificate{tsaCert}, chain...), signing.TSAConfig{
		Policy: append(append([]int{}, hixext.Arc...), 5, 1), Accuracy: time.Second, Now: cfg.clock()}); err != nil {
		return fail(err)
	}
	sealKey, err := serviceKey(ctx, cfg, "seal", cfg.Services.SealKey)
	if err != nil {
		return fail(err)
	}
	sealCert, err := serviceCert(ctx, cfg, n.ca, "seal", sealKey, ca.Request{Profile: ca.ProfileOrganisationSeal,
		CommonName: "Health Information Exchange Seal", Organization: "Ministry of Health and Medical Education"})
	if err != nil {
		return fail(err)
	}

	// Verification and ingestion, over the trust anchors in the database (the change feed reloads them).
	n.tokens = &tokens.Service{Store: ts, Issuer: adapterIssuer{n.ca}, Revoker: tokenRevoker{n.rev}, Clock: cfg.clock()}
	n.seal = signing.Seal{Signer: sealKey, Chain: append([]*x509.Certificate{sealCert}, chain...)}
	if err := n.reloadTrustAnchors(ctx); err != nil {
		return fail(err)
	}
	n.verifier = n.vs.Load().v
	if n.bundle, err = n.trustBundlePublisher(ctx); err != nil {
		return fail(err)
	}
	return n, nil
}

// issueFor issues req for key through the CA pipeline (the CSR is made with key, so the CA checks possession).
func issueFor(ctx context.Context, c *ca.CA, key crypto.Signer, req ca.Request) (*x509.Certificate, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	if req.CSR, err = x509.ParseCertificateRequest(der); err != nil {
		return nil, err
	}
	if req.Actor == "" {
		req.Actor = "system:serve"
	}
	return c.Issue(ctx, req)
}

// apiServer builds the API over the node's services.
func (n *node) apiServer() (*api.Server, error) {
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(n.ca.Issuer().Cert)
	adminFile := filepath.Join(n.cfg.dataDir, "admin.token")
	if _, created, err := api.EnsureAdminCredential(adminFile); err != nil {
		return nil, err
	} else if created {
		n.log.Info("created the local admin credential (loopback only)", "file", adminFile)
	}
	ta := tokenAPI{svc: n.tokens, st: n.ts, now: n.cfg.clock(), chain: func() []*x509.Certificate { return n.ca.Issuer().Chain }}
	pages, err := web.New(web.Config{Verifier: func() *signing.Verifier { return n.vs.Load().v }, Registry: physicianRegistry{n.ts}, Seal: &n.seal,
		TrustBundle: n.bundle.Signed, SealKey: n.bundle.Seal.Public(),
		OnError: func(r *http.Request, ref string, err error) {
			n.log.Error("verification page", "ref", ref, "err", err)
		}})
	if err != nil {
		return nil, err
	}
	return api.New(api.Config{ClientCAs: clientCAs, AdminTokenFile: adminFile, Logger: n.log,
		RateLimit: n.cfg.API.RateLimit, PublicRateLimit: n.cfg.API.PublicRateLimit,
		RateWindow: time.Duration(n.cfg.API.RateWindow), SignRateLimit: n.cfg.API.SignRateLimit, SignGlobalRateLimit: n.cfg.API.SignGlobalRateLimit, AuthFailLimit: n.cfg.API.AuthFailLimit,
		OCSPSignsOnDemand: n.cfg.Services.OCSPSignNonces || n.cfg.Services.OCSPSignUnknown}, api.Services{
		Certs:         certService{ca: n.ca, st: n.st, rev: n.rev, ocsp: n.ocsp},
		CRL:           n.crl,
		OCSP:          n.ocsp,
		TSA:           n.tsa,
		Ingestor:      liveIngestor{n},
		Verifier:      liveVerifier{n},
		Batch:         liveBatch{n},
		Upgrader:      upgrader{n},
		Prescriptions: prescriptionReader{n.st},
		Tokens:        ta,
		Renewal:       ta,
		Registry:      ta,
		Audit:         auditAPI{st: n.st, vkeys: n.vkeys},
		Auditor:       n.st,
		Revocation:    n.clientRev,
		Ready:         &readiness{st: n.st, holder: n.id},
		CAAdmin:       caAdmin{n},
		Approvals:     approvalStore{n.st},
		Pages:         pages,
		Offline:       n.bundle,
		Revocations:   revocationFeed{n.st},
		Remote:        remoteAPI(n.remote),
	})
}

// publicPaths are the routes of the plain-HTTP listener: what relying parties fetch without credentials.
var publicPaths = []string{"/healthz", "/readyz", "/crl/", "/ocsp", "/tsa", "/ca/", "/verify", "/trust-bundle", "/v1/revocations",
	"/v1/openapi.json"} // the API's description is public (docs/api.md), on both listeners

func publicOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range publicPaths {
			if r.URL.Path == p || strings.HasSuffix(p, "/") && strings.HasPrefix(r.URL.Path, p) || strings.HasPrefix(r.URL.Path, p+"/") {
				next.ServeHTTP(w, r)
				return
			}
		}
		api.NotFound(w, "this listener serves only CRLs, OCSP, the TSA and CA certificates; the API is on the TLS listener")
	})
}

// caFiles serves the CA certificates (DER) for the caIssuers access method (RFC 5280 §4.2.2.1).
func (n *node) caFiles(next http.Handler) http.Handler {
	is := n.ca.Issuer()
	files := map[string][]byte{"/ca/intermediate.crt": is.Cert.Raw, "/ca/root.crt": is.Root().Raw}
	// PEM copies for people: a facility's --ca-bundle is /ca/root.pem; /ca/chain.pem is intermediate then root.
	pems := map[string][]byte{"/ca/root.pem": encodeChain(is.Root()), "/ca/chain.pem": encodeChain(is.Chain...)}
	if len(n.tsaCerts) > 0 { // a verifier outside the exchange puts the TSA on its trust list (mohr verify --tsa-cert)
		pems["/ca/tsa.pem"] = encodeChain(n.tsaCerts...)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := pems[r.URL.Path]; ok && r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "application/x-pem-file")
			w.Header().Set("Cache-Control", "public, max-age=86400")
			w.Write(b)
			return
		}
		if b, ok := files[r.URL.Path]; ok && r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "application/pkix-cert")
			w.Header().Set("Cache-Control", "public, max-age=86400")
			w.Write(b)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func serve(ctx context.Context, cfg *Config, log *slog.Logger) error {
	n, err := build(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer n.close()
	if err := n.abandonStalePending(ctx); err != nil {
		return err
	}
	if err := n.ocsp.Start(ctx); err != nil {
		return fmt.Errorf("OCSP responder: %w", err)
	}
	if err := n.crl.PublishAll(ctx); err != nil {
		return fmt.Errorf("CRLs: %w", err)
	}
	srv, err := n.apiServer()
	if err != nil {
		return err
	}
	tlsKey, err := serviceKey(ctx, cfg, "tls", cfg.Services.TLSKey)
	if err != nil {
		return err
	}
	dns, ips := tlsNames(cfg)
	tlsCert, err := serviceCert(ctx, cfg, n.ca, "tls", tlsKey, ca.Request{Profile: ca.ProfileTLSServer, DNSNames: dns, IPs: ips})
	if err != nil {
		return err
	}
	tc := srv.TLSConfig()
	tc.Certificates = []tls.Certificate{{Certificate: [][]byte{tlsCert.Raw, n.ca.Issuer().Cert.Raw}, PrivateKey: tlsKey, Leaf: tlsCert}}
	tc.MinVersion = tls.VersionTLS12

	handler := n.caFiles(srv.Handler())
	apiHTTP := srv.HTTPServer(cfg.Listen)
	apiHTTP.Handler = handler
	apiHTTP.TLSConfig = tc
	pubHTTP := srv.HTTPServer(cfg.PublicListen)
	pubHTTP.Handler = publicOnly(handler)

	apiLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	pubLn, err := net.Listen("tcp", cfg.PublicListen)
	if err != nil {
		apiLn.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	goRun := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	goRun("crl", n.crl.Run)
	goRun("ocsp", n.ocsp.Run)
	goRun("audit checkpoints", n.checkpointLoop)
	goRun("change feed", n.changeFeed)
	goRun("archive renewal", n.archiveLoop)
	goRun("token outbox", n.outboxLoop)
	goRun("registry sync", func(ctx context.Context) error {
		return n.tokens.RunSync(ctx, n.ts, time.Minute, "system:sync", func(r tokens.SyncReport, err error) {
			if err != nil {
				log.Error("registry sync", "err", err)
			}
		})
	})
	go func() { errc <- apiHTTP.ServeTLS(apiLn, "", "") }()
	go func() { errc <- pubHTTP.Serve(api.ProblemListener(pubLn)) }()
	n.st.AppendAudit(ctx, newEvent("mohr.start", "system", "", map[string]any{"listen": cfg.Listen, "public": cfg.PublicListen}))
	log.Info("mohr serving", "api", "https://"+apiLn.Addr().String(), "public", "http://"+pubLn.Addr().String(),
		"data", cfg.dataDir, "database", cfg.Database.Driver)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("mohr stopping")
	sctx, scancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
	defer scancel()
	apiHTTP.Shutdown(sctx)
	pubHTTP.Shutdown(sctx)
	cancel()
	wg.Wait()
	if errors.Is(runErr, http.ErrServerClosed) {
		runErr = nil
	}
	return runErr
}

// checkpointLoop signs an audit checkpoint every audit.checkpoint_interval while the log grows, on one node
// of the cluster at a time: the holder of the checkpoint lease.
func (n *node) checkpointLoop(ctx context.Context) error {
	interval := time.Duration(n.cfg.Audit.CheckpointInterval)
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		if _, err := checkpointDue(ctx, n.st, n.audit, n.id, interval, time.Now()); err != nil && ctx.Err() == nil {
			n.log.Error("audit checkpoint", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// changeFeed follows the audit log and refreshes OCSP responses and CRL shards for changes made outside this
// process (the CLI, another node): the log is the one ordered record of every state change.
func (n *node) changeFeed(ctx context.Context) error {
	next := n.feedFrom
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	reloadAnchors := false // a trust-anchor change seen but not applied yet (the database failed): retried each poll
	// The serials of pages whose OCSP update failed (the database was unreachable): retried each poll, so
	// that the responses this node serves, and those it writes to services.ocsp_dir, do not wait for the
	// next full refresh.
	var retryIssued, retryChanged []string
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if len(retryIssued)+len(retryChanged) > 0 {
			_, err1 := n.ocsp.UpdateIssued(ctx, retryIssued)
			if err := errors.Join(err1, n.ocsp.UpdateMany(ctx, retryChanged)); err == nil {
				retryIssued, retryChanged = nil, nil
			}
		}
		if reloadAnchors {
			if err := n.reloadTrustAnchors(ctx); err != nil {
				n.log.Error("trust anchors", "err", err)
			} else {
				reloadAnchors = false
			}
		}
		polled := n.cfg.clock()() // before the log's size: every change committed before it is read by this poll
		size, err := n.st.AuditSize(ctx)
		if err != nil {
			continue
		}
		if size <= next {
			n.clientRev.Synced(polled)
			continue
		}
		for next < size {
			es, err := n.st.AuditEntries(ctx, next, 500)
			if err != nil || len(es) == 0 {
				break
			}
			// OCSP responses of the page's issuances (pre-signed by the issuing request on this node) and
			// status changes are signed and stored together after the page; lag is how long the oldest
			// of them waited since its event.
			var issued, changed []string
			var oldest time.Time
			for _, e := range es {
				switch e.Event.Kind {
				case revocation.EventCRLPublished:
					if shard, err := strconv.Atoi(strings.TrimPrefix(e.Event.Subject, "crl/")); err == nil {
						if err := n.crl.Load(ctx, shard); err != nil {
							n.log.Error("CRL load", "shard", shard, "err", err)
						}
					}
				case eventTrustAnchors:
					if err := n.reloadTrustAnchors(ctx); err != nil {
						n.log.Error("trust anchors", "err", err)
						reloadAnchors = true
					}
				case "cert.issued", revocation.EventRevoked, revocation.EventHeld, revocation.EventReleased:
					if len(issued)+len(changed) == 0 {
						oldest = e.Event.Time
					}
					if e.Event.Kind == "cert.issued" {
						issued = append(issued, e.Event.Subject)
					} else {
						changed = append(changed, e.Event.Subject)
					}
					if e.Event.Kind != "cert.issued" {
						n.clientRev.Invalidate(e.Event.Subject)
						if rec, err := n.st.Certificate(ctx, e.Event.Subject); err == nil {
							n.crl.Trigger(rec.Shard)
						}
					}
				}
				next = e.Seq + 1
			}
			if len(issued)+len(changed) > 0 {
				cached, err := n.ocsp.UpdateIssued(ctx, issued)
				if err != nil {
					n.log.Error("OCSP update", "err", err)
				}
				err2 := n.ocsp.UpdateMany(ctx, changed) // after: a serial issued and revoked in the page ends revoked
				if err2 != nil {
					n.log.Error("OCSP update", "err", err2)
				}
				if (err != nil || err2 != nil) && ctx.Err() == nil {
					retryIssued, retryChanged = append(retryIssued, issued...), append(retryChanged, changed...)
				}
				// scripts/bench-issue.sh reads these lines: pre-signing must keep up with issuance.
				n.log.Debug("OCSP pre-signed", "changes", len(issued)+len(changed), "in_request", cached,
					"lag", time.Since(oldest).Round(time.Millisecond))
			}
		}
		if next >= size {
			n.clientRev.Synced(polled)
		}
	}
}

// outboxLoop moves the token store's audit outbox into the audit log.
func (n *node) outboxLoop(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if _, err := n.ts.DrainAuditOutbox(ctx, n.st.AppendAuditTx); err != nil && ctx.Err() == nil {
			n.log.Error("token audit outbox", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// stalePending is how old a pending intent must be before a starting node closes it: older than any issuance in
// flight on another node.
const stalePending = 5 * time.Minute

// abandonStalePending closes intents left pending by a crash between "intent recorded" and "certificate
// recorded". Such a certificate may have been signed but was never handed out (Issue returns only after the
// record); closing the intent, audited, keeps the store's story complete.
func (n *node) abandonStalePending(ctx context.Context) error {
	recs, err := n.st.Certificates(ctx, ca.CertFilter{Status: ca.StatusPending, Limit: 10000})
	if err != nil {
		return err
	}
	for _, r := range recs {
		if time.Since(r.CreatedAt) < stalePending {
			continue
		}
		ev := newEvent("cert.abandoned", "system:serve", r.Serial, map[string]any{"reason": "intent still pending at start; never handed out"})
		if err := n.st.MarkFailed(ctx, r.Serial, ev); err != nil {
			return fmt.Errorf("close stale intent %s: %w", r.Serial, err)
		}
	}
	return nil
}
