package adapter_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/adapter"
	"github.com/mohr-hix/mohr/tokens"
	"github.com/mohr-hix/mohr/tokens/tokentest"
)

// flakyRenewer fails the first n calls (a CA outage), then issues from the test CA.
type flakyRenewer struct {
	ca    *tokentest.CA
	f     tokens.Facility
	fails int32
	calls atomic.Int32
}

func (r *flakyRenewer) Renew(ctx context.Context, cur *adapter.Credential, csr *x509.CertificateRequest) ([]*x509.Certificate, error) {
	if r.calls.Add(1) <= r.fails {
		return nil, errors.New("CA unreachable")
	}
	cert, chain, err := r.ca.IssueAdapter(ctx, csr, r.f)
	if err != nil {
		return nil, err
	}
	return append([]*x509.Certificate{cert}, chain...), nil
}

// TestRenewalLoop runs RunRenewal with a fake clock and sleep: renewal at 2/3 of the lifetime, exponential
// backoff through a CA outage, the current certificate kept meanwhile, readers racing the swap (run with -race).
func TestRenewalLoop(t *testing.T) {
	start := time.Now().UTC().Truncate(time.Second)
	clk := tokentest.NewClock(start)
	ca, err := tokentest.New("HIX", start)
	if err != nil {
		t.Fatal(err)
	}
	ca.Clock = clk.Now
	ca.Lifetime = 30 * time.Hour
	f := tokentest.Facility("SIAM-1001", start)
	key, _ := tokens.NewSoftwareKey(rand.Reader)
	csr, _ := tokens.NewCSR(rand.Reader, key, f.SIAMID, "adapter")
	cert, chain, err := ca.IssueAdapter(context.Background(), csr, f)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("https://exchange.invalid")
	a, err := adapter.NewAdapter(u, &adapter.Credential{Key: key, Chain: append([]*x509.Certificate{cert}, chain...)})
	if err != nil {
		t.Fatal(err)
	}
	ren := &flakyRenewer{ca: ca, f: f, fails: 4}
	a.Renewer = ren
	a.Clock = clk.Now
	a.MinBackoff, a.MaxBackoff = time.Second, 4*time.Second

	var mu sync.Mutex
	var sleeps []time.Duration
	var errs int
	renewed := make(chan struct{}, 4)
	a.OnError = func(error) { mu.Lock(); errs++; mu.Unlock() }
	a.OnRenew = func(context.Context, *adapter.Credential) error { renewed <- struct{}{}; return nil }
	ctx, cancel := context.WithCancel(context.Background())
	a.Sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		sleeps = append(sleeps, d)
		n := len(sleeps)
		mu.Unlock()
		if n > 8 {
			<-ctx.Done()
			return ctx.Err()
		}
		clk.Advance(d)
		return ctx.Err()
	}
	// Readers, as the TLS transport would be, while the loop swaps credentials.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					if a.Credential().Leaf() == nil {
						t.Error("nil leaf")
					}
				}
			}
		}()
	}
	done := make(chan error)
	go func() { done <- a.RunRenewal(ctx) }()
	<-renewed
	<-renewed
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunRenewal: %v", err)
	}
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	life := cert.NotAfter.Sub(cert.NotBefore)
	first := cert.NotBefore.Add(life * 2 / 3).Sub(start)
	want := []time.Duration{first, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i, w := range want {
		if i >= len(sleeps) || (sleeps[i]-w).Abs() > time.Second {
			t.Fatalf("sleeps %v, want prefix %v", sleeps, want)
		}
	}
	if errs != 4 {
		t.Fatalf("%d errors reported, want 4", errs)
	}
	// During the outage the original certificate stayed valid: the last failed attempt was before NotAfter.
	if !start.Add(first + 11*time.Second).Before(cert.NotAfter) {
		t.Fatal("outage outlasted the certificate")
	}
	if a.Credential().Leaf().Equal(cert) {
		t.Fatal("certificate not renewed")
	}
	if a.Credential().Key != key {
		t.Fatal("renewal without rekey changed the key")
	}
}
