package signing

import (
	"bytes"
	"context"
	"errors"
	"sync"

	"github.com/mohr-hix/mohr/signing/internal/rx"
)

// maxRegistryMemo bounds the prescribers one batch remembers; past it the registry is asked every time.
const maxRegistryMemo = 100_000

type registryMemoKey struct{}

// registryMemo remembers the registry's answers for the life of one request (a batch): its documents are judged
// against the registry as it stood when each prescriber was first looked up in that batch, and a batch of many
// prescriptions from few physicians asks the registry once per physician, not once per document. It lives in
// the request's context, so nothing outlives the request (no state kept across requests or nodes). Failures
// other than "unknown physician" are not remembered: the next document asks again.
type registryMemo struct {
	mu sync.Mutex
	m  map[string]registryAnswer
	// content and bundle are the last prescription content parsed under this memo and its parse: the three
	// validations of one ingestion read the same FHIR Bundle (rx.Parse is a function of the bytes alone, so
	// the same bytes give the same Bundle).
	content []byte
	bundle  rx.Bundle
}

// parseBundle is rx.Parse(content), through ctx's memo when it carries one. The Bundle is shared: read only.
func parseBundle(ctx context.Context, content []byte) (rx.Bundle, error) {
	memo, _ := ctx.Value(registryMemoKey{}).(*registryMemo)
	if memo == nil {
		return rx.Parse(content)
	}
	memo.mu.Lock()
	if memo.content != nil && bytes.Equal(memo.content, content) {
		b := memo.bundle
		memo.mu.Unlock()
		return b, nil
	}
	memo.mu.Unlock()
	b, err := rx.Parse(content)
	if err == nil {
		memo.mu.Lock()
		memo.content, memo.bundle = bytes.Clone(content), b
		memo.mu.Unlock()
	}
	return b, err
}

type registryAnswer struct {
	reg Registration
	err error
}

// withRegistryMemo returns ctx carrying a new memo of registry answers, for one batch.
func withRegistryMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, registryMemoKey{}, &registryMemo{m: map[string]registryAnswer{}})
}

// registration asks the configured registry for councilNo, through the batch's memo when ctx carries one.
func (v *Verifier) registration(ctx context.Context, councilNo string) (Registration, error) {
	memo, _ := ctx.Value(registryMemoKey{}).(*registryMemo)
	if memo == nil {
		return v.cfg.Registry.Registration(ctx, councilNo)
	}
	memo.mu.Lock()
	a, ok := memo.m[councilNo]
	memo.mu.Unlock()
	if ok {
		return a.reg, a.err
	}
	reg, err := v.cfg.Registry.Registration(ctx, councilNo)
	if err == nil || errors.Is(err, ErrUnknownPhysician) {
		memo.mu.Lock()
		if len(memo.m) < maxRegistryMemo {
			memo.m[councilNo] = registryAnswer{reg: reg, err: err}
		}
		memo.mu.Unlock()
	}
	return reg, err
}
