package signing

import (
	"context"
	"os"
	"runtime"
	"sync"
)

// BatchItem is one document to verify.
type BatchItem struct {
	Index int
	Name  string
	DER   []byte
}

// BatchStats counts the results of a batch.
type BatchStats struct {
	Total         int `json:"total"`
	Passed        int `json:"passed"`
	Failed        int `json:"failed"`
	Indeterminate int `json:"indeterminate"`
}

// Add counts r.
func (s *BatchStats) Add(r *Report) {
	s.Total++
	switch r.Indication {
	case TotalPassed:
		s.Passed++
	case TotalFailed:
		s.Failed++
	default:
		s.Indeterminate++
	}
}

// BatchVerifier verifies many signatures with a pool of workers, one per core by default, sharing one
// Verifier (and so its certificate, chain and OCSP caches). It is what insurers use for bulk verification.
type BatchVerifier struct {
	Verifier *Verifier
	// Workers is the pool size; runtime.GOMAXPROCS(0) when zero.
	Workers int
}

func (b *BatchVerifier) workers() int {
	if b.Workers > 0 {
		return b.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// Run verifies every item from in and sends one Report per item to out (Report.Name is the item's name), in
// completion order, then closes out. It returns when in is closed and drained or ctx is done.
func (b *BatchVerifier) Run(ctx context.Context, in <-chan BatchItem, out chan<- *Report) {
	ctx = withRegistryMemo(ctx)
	var wg sync.WaitGroup
	for w := 0; w < b.workers(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range in {
				if ctx.Err() != nil {
					continue // drain
				}
				r := b.Verifier.Verify(ctx, it.DER)
				r.Name = it.Name
				select {
				case out <- r:
				case <-ctx.Done():
				}
			}
		}()
	}
	wg.Wait()
	close(out)
}

// VerifyFiles verifies the DER files named by paths and calls fn for each report (from one goroutine, in
// completion order). A file that cannot be read yields a FORMAT_FAILURE report naming the error.
func (b *BatchVerifier) VerifyFiles(ctx context.Context, paths []string, fn func(*Report)) (BatchStats, error) {
	in := make(chan BatchItem, 4*b.workers())
	out := make(chan *Report, 4*b.workers())
	go b.Run(ctx, in, out)
	go func() {
		defer close(in)
		for i, p := range paths {
			der, err := os.ReadFile(p)
			if err != nil {
				der = nil
			}
			select {
			case in <- BatchItem{Index: i, Name: p, DER: der}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var st BatchStats
	for rep := range out {
		st.Add(rep)
		if fn != nil {
			fn(rep)
		}
	}
	return st, ctx.Err()
}
