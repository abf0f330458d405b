package api

import (
	"crypto/x509"
	"errors"
	"log/slog"
	"time"
)

// Config configures the API server. Zero values take the defaults listed on each field.
type Config struct {
	// ClientCAs holds the intermediate CA (and only it) that client certificates must chain to. Required.
	ClientCAs *x509.CertPool
	// AdminTokenFile is the file with the local admin bearer secret (see EnsureAdminCredential). Empty disables
	// the admin credential.
	AdminTokenFile string
	// AllowNoRevocationCheck lets New accept Services.Revocation == nil (development only). Without it New
	// refuses to build a server that cannot check client certificates for revocation.
	AllowNoRevocationCheck bool

	// Body limits. MaxJSONBody (default 64 KiB) applies to small JSON requests, MaxCMSBody (default 4 MiB) to
	// CMS bodies, MaxImportBody (default 32 MiB) to registry imports, MaxBatchBody
	// (default 1 GiB) to streaming batch verification.
	MaxJSONBody   int64
	MaxCMSBody    int64
	MaxImportBody int64
	MaxBatchBody  int64

	// MaxPKIBody (default 4 KiB) limits OCSP and time-stamp request bodies: an RFC 6960 request for one
	// certificate or an RFC 3161 query is a few hundred bytes.
	MaxPKIBody int64

	// Signing routes (the TSA; OCSP too when OCSPSignsOnDemand) are limited apart from the general limits,
	// because each answer costs a signature with a service key: SignRateLimit per IP (default 120) and
	// SignGlobalRateLimit for all callers together (default 3000) per RateWindow. Over either, 429 with
	// Retry-After.
	SignRateLimit       int
	SignGlobalRateLimit int
	// OCSPSignsOnDemand says the OCSP responder signs on request (its nonce or unknown-serial policy is on), so
	// the OCSP routes take the signing limits too.
	OCSPSignsOnDemand bool
	// AuthFailLimit is how many rejected credentials (bearer or client certificate) one source address may
	// present per RateWindow (default 10) before its further attempts get 429. Each rejection is written to the
	// audit log as auth.failed (up to the limit, then one auth.throttled per window).
	AuthFailLimit int

	// Rate limit per client (client certificate fingerprint, else IP): RateLimit requests per RateWindow.
	// Defaults 600 per minute. The public OCSP, CRL and TSA routes use PublicRateLimit (default 6000) per IP.
	RateLimit       int
	PublicRateLimit int
	// PageRateLimit bounds uploads to the verification page per IP (or per client certificate) per
	// RateWindow; default 30.
	PageRateLimit int
	RateWindow    time.Duration

	// Server timeouts (http.Server): ReadHeaderTimeout 5 s, ReadTimeout 60 s, WriteTimeout 60 s, IdleTimeout
	// 120 s. RequestTimeout (default 30 s) is the context deadline of each request; BatchTimeout (default 30 min)
	// replaces it, and the read and write deadlines, on the batch verification route.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	RequestTimeout    time.Duration
	BatchTimeout      time.Duration

	// ApprovalTTL is how long a dual-control approval waits for the second operator (default 15 min).
	ApprovalTTL time.Duration

	// Logger receives one access-log line per request and the text of unexpected errors (with the opaque id
	// the client sees). It never receives bodies, bearer secrets or query strings. nil discards.
	Logger *slog.Logger
	// Now is the clock (default time.Now); certificate validity is checked against it.
	Now func() time.Time
	// Version is shown in the OpenAPI document.
	Version string
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

func (c *Config) setDefaults() {
	def := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	defInt := func(p *int64, v int64) {
		if *p <= 0 {
			*p = v
		}
	}
	defInt(&c.MaxJSONBody, 64*kib)
	defInt(&c.MaxCMSBody, 4*mib)
	defInt(&c.MaxImportBody, 32*mib)
	defInt(&c.MaxBatchBody, 1<<30)
	defInt(&c.MaxPKIBody, 4*kib)
	defN := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	defN(&c.SignRateLimit, 120)
	defN(&c.SignGlobalRateLimit, 3000)
	defN(&c.AuthFailLimit, 10)
	if c.RateLimit <= 0 {
		c.RateLimit = 600
	}
	if c.PublicRateLimit <= 0 {
		c.PublicRateLimit = 6000
	}
	if c.PageRateLimit <= 0 {
		c.PageRateLimit = 30
	}
	def(&c.RateWindow, time.Minute)
	def(&c.ReadHeaderTimeout, 5*time.Second)
	def(&c.ReadTimeout, 60*time.Second)
	def(&c.WriteTimeout, 60*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	def(&c.RequestTimeout, 30*time.Second)
	def(&c.BatchTimeout, 30*time.Minute)
	def(&c.ApprovalTTL, 15*time.Minute)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Version == "" {
		c.Version = "dev"
	}
}

func (c *Config) validate(svc Services) error {
	if c.ClientCAs == nil {
		return errors.New("api: Config.ClientCAs is required")
	}
	if svc.Revocation == nil && !c.AllowNoRevocationCheck {
		return errors.New("api: Services.Revocation is required (or set Config.AllowNoRevocationCheck for development)")
	}
	return nil
}
