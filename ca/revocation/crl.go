package revocation

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/keys"
)

// EventCRLPublished is the audit event kind of each CRL the publisher signs.
const EventCRLPublished = "crl.published"

// Defaults of CRLConfig.
const (
	DefaultCRLValidity = 24 * time.Hour
	DefaultCRLInterval = time.Minute
)

var oidIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}

// CRLSink persists what the publisher signs (a file tree a CDN serves, object storage, a table). It is
// optional: the publisher serves the newest CRL of each shard from memory either way.
type CRLSink interface {
	PutCRL(ctx context.Context, crl PublishedCRL) error
}

// PublishedCRL is one signed CRL of one shard.
type PublishedCRL struct {
	Shard      int
	Number     int64 // the cRLNumber extension (RFC 5280 §5.2.3)
	URL        string
	DER        []byte
	ThisUpdate time.Time
	NextUpdate time.Time
	Entries    int
}

// CRLConfig configures a CRLPublisher.
type CRLConfig struct {
	Issuer *ca.Issuer
	Store  ca.Store
	// Shards is the number of CRL shards certificates are spread over (ca.ShardFor); at least 1.
	Shards int
	// BaseURL is the CRL base the issuance profile puts in certificates: shard i's CRL distribution
	// point is ca.CRLURL(BaseURL, i), and so is its CRL's issuing distribution point.
	BaseURL string
	// Validity is nextUpdate - thisUpdate (RFC 5280 §5.1.2.5); DefaultCRLValidity if zero.
	Validity time.Duration
	// RegenerateBefore: Run re-signs a shard once its nextUpdate is less than this away; Validity/2 if zero.
	RegenerateBefore time.Duration
	// Interval is how often Run looks for shards due; DefaultCRLInterval if zero.
	Interval time.Duration
	// Sink, if not nil, receives every CRL signed.
	Sink CRLSink
	// OnError, if not nil, hears of failures inside Run (the library does not log).
	OnError func(shard int, err error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// CRLPublisher signs sharded CRLs (RFC 5280 §5) with the CA key and serves the newest of each shard.
// Each shard's CRL lists the revoked and held certificates of that shard that have not expired, and
// carries a critical issuing distribution point (§5.2.5) naming the shard's URL with
// onlyContainsUserCerts, so that it is authoritative exactly for the certificates whose CRL distribution
// point (§4.2.1.13) names that URL. Released holds drop out of the next CRL (§5.3.1, no removeFromCRL in
// full CRLs).
type CRLPublisher struct {
	cfg    CRLConfig
	latest []atomic.Pointer[PublishedCRL]
	// mu serialises signing so the newest CRL number is always the one served.
	mu      sync.Mutex
	pending sync.Map // shard -> struct{}: triggered, not yet published
	wake    chan struct{}
}

// NewCRLPublisher checks cfg: the issuer certificate must allow cRLSign, carry a subject key identifier
// (for the CRL's authority key identifier, §5.2.1) and match the signer.
func NewCRLPublisher(cfg CRLConfig) (*CRLPublisher, error) {
	if cfg.Issuer == nil || cfg.Issuer.Cert == nil || cfg.Issuer.Signer == nil {
		return nil, fmt.Errorf("%w: CRL issuer and signer required", ErrConfig)
	}
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: CRL store required", ErrConfig)
	}
	if cfg.Shards < 1 {
		return nil, fmt.Errorf("%w: %d CRL shards", ErrConfig, cfg.Shards)
	}
	if cfg.BaseURL == "" {
		return nil, fmt.Errorf("%w: CRL base URL required", ErrConfig)
	}
	if cfg.Issuer.Cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, fmt.Errorf("%w: issuer certificate lacks cRLSign", ErrConfig)
	}
	if len(cfg.Issuer.Cert.SubjectKeyId) == 0 {
		return nil, fmt.Errorf("%w: issuer certificate lacks a subject key identifier", ErrConfig)
	}
	if err := keys.MatchesCertificate(cfg.Issuer.Signer, cfg.Issuer.Cert); err != nil {
		return nil, fmt.Errorf("%w: CRL signer: %w", ErrConfig, err)
	}
	if cfg.Validity <= 0 {
		cfg.Validity = DefaultCRLValidity
	}
	if cfg.RegenerateBefore <= 0 || cfg.RegenerateBefore >= cfg.Validity {
		cfg.RegenerateBefore = cfg.Validity / 2
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultCRLInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &CRLPublisher{
		cfg:    cfg,
		latest: make([]atomic.Pointer[PublishedCRL], cfg.Shards),
		wake:   make(chan struct{}, 1),
	}, nil
}

// Shards returns the number of shards.
func (p *CRLPublisher) Shards() int { return p.cfg.Shards }

// URL returns the distribution point of shard, as certificates name it.
func (p *CRLPublisher) URL(shard int) string { return ca.CRLURL(p.cfg.BaseURL, shard) }

// CRL returns the newest CRL of shard for serving, with its thisUpdate and nextUpdate; ok is false when
// the shard has none yet or does not exist. The caller must not modify der.
func (p *CRLPublisher) CRL(shard int) (der []byte, thisUpdate, nextUpdate time.Time, ok bool) {
	if shard < 0 || shard >= len(p.latest) {
		return nil, time.Time{}, time.Time{}, false
	}
	c := p.latest[shard].Load()
	if c == nil {
		return nil, time.Time{}, time.Time{}, false
	}
	return c.DER, c.ThisUpdate, c.NextUpdate, true
}

// Trigger asks Run to regenerate shard soon; calls for the same shard before Run gets to it coalesce.
// It never blocks. Without a running Run the request waits for the next Run.
func (p *CRLPublisher) Trigger(shard int) {
	if shard < 0 || shard >= p.cfg.Shards {
		return
	}
	p.pending.Store(shard, struct{}{})
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// PublishAll signs every shard once.
func (p *CRLPublisher) PublishAll(ctx context.Context) error {
	for i := 0; i < p.cfg.Shards; i++ {
		if _, err := p.Publish(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// Publish signs a new CRL for shard now, makes it the one CRL serves, records an audit event and hands it
// to the sink. If only the sink fails, the new CRL is served anyway and the error is returned.
//
// When the Store is also a ca.CRLStore (several nodes on one database), the number is taken, the revoked
// entries read, the CRL stored and its audit event appended in one transaction that locks the shard, and a
// new CRL is signed only if it would list something the newest stored one does not or that one is due for
// regeneration; otherwise the stored one is served. Every node then serves the same bytes.
func (p *CRLPublisher) Publish(ctx context.Context, shard int) (PublishedCRL, error) {
	if shard < 0 || shard >= p.cfg.Shards {
		return PublishedCRL{}, fmt.Errorf("%w: %d", ErrNoCRL, shard)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending.Delete(shard)
	if cs, ok := p.cfg.Store.(ca.CRLStore); ok {
		return p.publishShared(ctx, cs, shard)
	}

	now := p.cfg.Now().UTC().Truncate(time.Second)
	entries, err := p.cfg.Store.RevokedInShard(ctx, shard, now)
	if err != nil {
		return PublishedCRL{}, fmt.Errorf("revocation: CRL shard %d: %w", shard, err)
	}
	number, err := p.cfg.Store.NextCRLNumber(ctx, shard)
	if err != nil {
		return PublishedCRL{}, fmt.Errorf("revocation: CRL shard %d number: %w", shard, err)
	}
	c, err := p.newCRL(shard, number, now, entries)
	if err != nil {
		return PublishedCRL{}, err
	}
	p.install(&c)
	if err := p.cfg.Store.AppendAudit(ctx, crlEvent(c)); err != nil {
		return c, fmt.Errorf("revocation: CRL shard %d audit: %w", shard, err)
	}
	return c, p.sink(ctx, c)
}

func (p *CRLPublisher) newCRL(shard int, number int64, now time.Time, entries []ca.RevokedEntry) (PublishedCRL, error) {
	c := PublishedCRL{
		Shard:      shard,
		Number:     number,
		URL:        p.URL(shard),
		ThisUpdate: now,
		NextUpdate: now.Add(p.cfg.Validity),
		Entries:    len(entries),
	}
	var err error
	c.DER, err = signCRL(p.cfg.Issuer, c, entries)
	if err != nil {
		return PublishedCRL{}, fmt.Errorf("revocation: CRL shard %d: %w", shard, err)
	}
	return c, nil
}

// publishShared is Publish on a ca.CRLStore.
func (p *CRLPublisher) publishShared(ctx context.Context, cs ca.CRLStore, shard int) (PublishedCRL, error) {
	now := p.cfg.Now().UTC().Truncate(time.Second)
	var signed *PublishedCRL
	rec, err := cs.SignCRL(ctx, shard, now, func(latest *ca.CRLRecord, number int64, entries []ca.RevokedEntry) (*ca.CRLRecord, audit.Event, error) {
		eh := ca.CRLEntriesHash(entries)
		if latest != nil && latest.EntriesHash == eh && latest.NextUpdate.Sub(now) > p.cfg.RegenerateBefore {
			return nil, audit.Event{}, nil // the newest CRL already says all of it
		}
		c, err := p.newCRL(shard, number, now, entries)
		if err != nil {
			return nil, audit.Event{}, err
		}
		signed = &c
		return &ca.CRLRecord{Shard: shard, Number: number, DER: c.DER, ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate,
			EntriesHash: eh}, crlEvent(c), nil
	})
	if err != nil {
		return PublishedCRL{}, fmt.Errorf("revocation: CRL shard %d: %w", shard, err)
	}
	c := p.fromRecord(rec)
	p.install(&c)
	if signed != nil && signed.Number == rec.Number {
		return c, p.sink(ctx, c)
	}
	return c, nil
}

func (p *CRLPublisher) fromRecord(rec ca.CRLRecord) PublishedCRL {
	return PublishedCRL{Shard: rec.Shard, Number: rec.Number, URL: p.URL(rec.Shard), DER: rec.DER,
		ThisUpdate: rec.ThisUpdate, NextUpdate: rec.NextUpdate, Entries: -1}
}

// install makes c the served CRL of its shard unless a CRL with a higher number is served already.
func (p *CRLPublisher) install(c *PublishedCRL) {
	for {
		prev := p.latest[c.Shard].Load()
		if prev != nil && prev.Number >= c.Number {
			return
		}
		if p.latest[c.Shard].CompareAndSwap(prev, c) {
			return
		}
	}
}

func (p *CRLPublisher) sink(ctx context.Context, c PublishedCRL) error {
	if p.cfg.Sink != nil {
		if err := p.cfg.Sink.PutCRL(ctx, c); err != nil {
			return fmt.Errorf("revocation: CRL shard %d sink: %w", c.Shard, err)
		}
	}
	return nil
}

// Load serves the newest CRL of shard stored in the database (a ca.CRLStore) if it is newer than the one
// served: how a node picks up a CRL another node signed. It does nothing on a store that keeps no CRLs.
func (p *CRLPublisher) Load(ctx context.Context, shard int) error {
	cs, ok := p.cfg.Store.(ca.CRLStore)
	if !ok || shard < 0 || shard >= p.cfg.Shards {
		return nil
	}
	rec, err := cs.LatestCRL(ctx, shard)
	if errors.Is(err, ca.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("revocation: CRL shard %d: %w", shard, err)
	}
	c := p.fromRecord(rec)
	p.install(&c)
	return nil
}

func crlEvent(c PublishedCRL) audit.Event {
	sum := sha256.Sum256(c.DER)
	data, _ := json.Marshal(struct {
		Number     int64     `json:"number"`
		URL        string    `json:"url"`
		ThisUpdate time.Time `json:"thisUpdate"`
		NextUpdate time.Time `json:"nextUpdate"`
		Entries    int       `json:"entries"`
		SHA256     string    `json:"sha256"`
	}{c.Number, c.URL, c.ThisUpdate, c.NextUpdate, c.Entries, hex.EncodeToString(sum[:])})
	return audit.Event{Time: c.ThisUpdate, Kind: EventCRLPublished, Actor: "system", Subject: "crl/" + strconv.Itoa(c.Shard), Data: data}
}

// Run publishes every shard that has no CRL or whose nextUpdate is less than RegenerateBefore away, then
// keeps doing so every Interval, and publishes triggered shards as soon as it can. It returns ctx's error
// when ctx ends. Failures go to OnError and are retried at the next tick.
func (p *CRLPublisher) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	p.publishDue(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			p.publishDue(ctx)
		case <-p.wake:
			p.publishTriggered(ctx)
		}
	}
}

func (p *CRLPublisher) publishTriggered(ctx context.Context) {
	p.pending.Range(func(k, _ any) bool {
		if ctx.Err() != nil {
			return false
		}
		shard := k.(int)
		if _, err := p.Publish(ctx, shard); err != nil {
			p.pending.Store(shard, struct{}{}) // retried at the next tick
			p.report(shard, err)
		}
		return true
	})
}

func (p *CRLPublisher) publishDue(ctx context.Context) {
	p.publishTriggered(ctx)
	now := p.cfg.Now()
	for i := 0; i < p.cfg.Shards && ctx.Err() == nil; i++ {
		if err := p.Load(ctx, i); err != nil {
			p.report(i, err)
		}
		c := p.latest[i].Load()
		if c != nil && c.NextUpdate.Sub(now) > p.cfg.RegenerateBefore {
			continue
		}
		if _, err := p.Publish(ctx, i); err != nil {
			p.report(i, err)
		}
	}
}

func (p *CRLPublisher) report(shard int, err error) {
	if p.cfg.OnError != nil {
		p.cfg.OnError(shard, err)
	}
}

// issuingDistributionPoint encodes RFC 5280 §5.2.5:
//
//	IssuingDistributionPoint ::= SEQUENCE {
//	     distributionPoint          [0] DistributionPointName OPTIONAL,
//	     onlyContainsUserCerts      [1] BOOLEAN DEFAULT FALSE, ... }
//	DistributionPointName ::= CHOICE { fullName [0] GeneralNames, ... }
//
// with fullName one uniformResourceIdentifier [6]. The module uses implicit tags, but a tag on a CHOICE is
// explicit, so distributionPoint is constructed [0] around constructed [0] around primitive [6].
func issuingDistributionPoint(url string) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddBytes([]byte(url))
				})
			})
		})
		b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddUint8(0xff)
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("revocation: issuing distribution point: %w", err)
	}
	return der, nil
}
