package hsm

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/keys"
)

// TestConcurrentSigning signs from many goroutines through pools smaller than the number of
// goroutines; run it with -race. Every signature must verify, and the pool must never hold more
// sessions than its size.
func TestConcurrentSigning(t *testing.T) {
	module, pinFile := softhsm(t)
	ctx := context.Background()
	for _, alg := range []string{AlgECP256, AlgRSA2048} {
		t.Run(alg, func(t *testing.T) {
			o := newTestOpener(t, module, 2)
			s, err := o.GenerateKey(ctx, keyURI(tokRace, "race-"+alg, pinFile), alg)
			if err != nil {
				t.Fatal(err)
			}
			k := s.(*Key)
			const workers, each = 8, 25
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < each; i++ {
						d := sha256.Sum256(fmt.Appendf(nil, "%d/%d", w, i))
						sig, err := k.SignContext(ctx, d[:], crypto.SHA256)
						if err == nil {
							err = keys.VerifyDigest(k.Public(), d[:], sig, crypto.SHA256)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			k.pool.mu.Lock()
			idle := len(k.pool.idle)
			k.pool.mu.Unlock()
			if idle > 2 {
				t.Errorf("pool holds %d sessions, more than its size 2", idle)
			}
		})
	}
}

// TestCloseWhileSigning closes the Opener while goroutines sign: Close waits for the signatures under
// way, and later ones fail with ErrClosed rather than touching an unloaded module.
func TestCloseWhileSigning(t *testing.T) {
	module, pinFile := softhsm(t)
	ctx := context.Background()
	o := NewOpener(module)
	o.MaxSessions = 2
	s, err := o.GenerateKey(ctx, keyURI(tokRace, "close-while-signing", pinFile), AlgECP256)
	if err != nil {
		t.Fatal(err)
	}
	k := s.(*Key)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; ; i++ {
				d := sha256.Sum256([]byte{byte(w), byte(i)})
				if _, err := k.SignContext(ctx, d[:], crypto.SHA256); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("got %v, want ErrClosed", err)
					}
					return
				}
			}
		}()
	}
	close(start)
	time.Sleep(20 * time.Millisecond)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}
