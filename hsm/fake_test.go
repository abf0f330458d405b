package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/mohr-hix/mohr/keys"
)

// fakeModule is a PKCS#11 module in memory with one token, one EC key and switches for faults. It
// tests the pool's logic (login, recovery, slot search) in ways SoftHSM cannot be made to fail.
type fakeModule struct {
	mu          sync.Mutex
	label, pin  string
	slot        uint
	present     bool
	loginRV     uint // if set, C_Login returns it
	loginCalls  int
	loggedIn    bool
	sessions    map[pkcs11.SessionHandle]bool
	nextSession pkcs11.SessionHandle
	objGen      pkcs11.ObjectHandle // object handles change with it
	find        map[pkcs11.SessionHandle][]pkcs11.ObjectHandle
	key         *ecdsa.PrivateKey
	signs       atomic.Int64
}

func newFake(t *testing.T) (*fakeModule, string) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f := &fakeModule{label: "Fake", pin: "1234", slot: 7, present: true, key: k,
		sessions: map[pkcs11.SessionHandle]bool{}, find: map[pkcs11.SessionHandle][]pkcs11.ObjectHandle{}, nextSession: 1}
	path := "/fake/" + t.Name()
	old := loadBackend
	loadBackend = func(p string) (backend, error) {
		if p != path {
			return old(p)
		}
		return f, nil
	}
	t.Cleanup(func() { loadBackend = old })
	return f, path
}

func (f *fakeModule) privH() pkcs11.ObjectHandle { return 100 + 10*f.objGen }
func (f *fakeModule) pubH() pkcs11.ObjectHandle  { return 101 + 10*f.objGen }

// closeAll is C_CloseAllSessions by someone else: sessions, login and object handles are gone.
func (f *fakeModule) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.sessions)
	f.loggedIn = false
	f.objGen++
}

func (f *fakeModule) remove() {
	f.closeAll()
	f.mu.Lock()
	f.present = false
	f.mu.Unlock()
}

func (f *fakeModule) insert(slot uint) {
	f.mu.Lock()
	f.present, f.slot = true, slot
	f.mu.Unlock()
}

func (f *fakeModule) check(sh pkcs11.SessionHandle) error {
	if !f.present {
		return pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED)
	}
	if !f.sessions[sh] {
		return pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	return nil
}

func (f *fakeModule) Initialize(...pkcs11.InitializeOption) error { return nil }
func (f *fakeModule) Finalize() error                             { return nil }
func (f *fakeModule) Destroy()                                    {}
func (f *fakeModule) GetSlotList(bool) ([]uint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.present {
		return nil, nil
	}
	return []uint{f.slot}, nil
}
func (f *fakeModule) GetSlotInfo(uint) (pkcs11.SlotInfo, error) { return pkcs11.SlotInfo{}, nil }
func (f *fakeModule) GetTokenInfo(slot uint) (pkcs11.TokenInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.present || slot != f.slot {
		return pkcs11.TokenInfo{}, pkcs11.Error(pkcs11.CKR_SLOT_ID_INVALID)
	}
	return pkcs11.TokenInfo{Label: f.label}, nil
}
func (f *fakeModule) OpenSession(slot uint, _ uint) (pkcs11.SessionHandle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.present || slot != f.slot {
		return 0, pkcs11.Error(pkcs11.CKR_SLOT_ID_INVALID)
	}
	f.nextSession++
	f.sessions[f.nextSession] = true
	return f.nextSession, nil
}
func (f *fakeModule) CloseSession(sh pkcs11.SessionHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sessions, sh)
	return nil
}
func (f *fakeModule) GetSessionInfo(sh pkcs11.SessionHandle) (pkcs11.SessionInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := uint(pkcs11.CKS_RW_PUBLIC_SESSION)
	if f.loggedIn {
		st = pkcs11.CKS_RW_USER_FUNCTIONS
	}
	return pkcs11.SessionInfo{State: st}, f.check(sh)
}
func (f *fakeModule) Login(sh pkcs11.SessionHandle, _ uint, pin string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(sh); err != nil {
		return err
	}
	f.loginCalls++
	switch {
	case f.loginRV != 0:
		return pkcs11.Error(f.loginRV)
	case f.loggedIn:
		return pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)
	case pin != f.pin:
		return pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)
	}
	f.loggedIn = true
	return nil
}
func (f *fakeModule) FindObjectsInit(sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(sh); err != nil {
		return err
	}
	var cls uint
	label := ""
	for _, a := range tmpl {
		switch a.Type {
		case pkcs11.CKA_CLASS:
			cls = ulong(a.Value)
		case pkcs11.CKA_LABEL:
			label = string(a.Value)
		case pkcs11.CKA_ID:
			if string(a.Value) != "\x01" {
				label = "-"
			}
		}
	}
	var hs []pkcs11.ObjectHandle
	if label == "" || label == "k" {
		switch {
		case cls == pkcs11.CKO_PRIVATE_KEY && f.loggedIn:
			hs = append(hs, f.privH())
		case cls == pkcs11.CKO_PUBLIC_KEY:
			hs = append(hs, f.pubH())
		}
	}
	f.find[sh] = hs
	return nil
}
func (f *fakeModule) FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(sh); err != nil {
		return nil, false, err
	}
	hs := f.find[sh]
	n := min(max, len(hs))
	f.find[sh] = hs[n:]
	return hs[:n], false, nil
}
func (f *fakeModule) FindObjectsFinal(sh pkcs11.SessionHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.find, sh)
	return f.check(sh)
}
func (f *fakeModule) GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(sh); err != nil {
		return nil, err
	}
	if o != f.privH() && o != f.pubH() {
		return nil, pkcs11.Error(pkcs11.CKR_OBJECT_HANDLE_INVALID)
	}
	params, _ := asn1.Marshal(oidP256)
	point, _ := f.key.PublicKey.Bytes()
	wrapped, _ := asn1.Marshal(point)
	out := make([]*pkcs11.Attribute, len(a))
	for i, at := range a {
		v := []byte(nil)
		switch at.Type {
		case pkcs11.CKA_KEY_TYPE:
			v = pkcs11.NewAttribute(0, pkcs11.CKK_EC).Value
		case pkcs11.CKA_LABEL:
			v = []byte("k")
		case pkcs11.CKA_ID:
			v = []byte{1}
		case pkcs11.CKA_EC_PARAMS:
			v = params
		case pkcs11.CKA_EC_POINT:
			v = wrapped
		}
		out[i] = &pkcs11.Attribute{Type: at.Type, Value: v}
	}
	return out, nil
}
func (f *fakeModule) CreateObject(pkcs11.SessionHandle, []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	return 0, pkcs11.Error(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}
func (f *fakeModule) DestroyObject(pkcs11.SessionHandle, pkcs11.ObjectHandle) error { return nil }
func (f *fakeModule) GenerateKeyPair(pkcs11.SessionHandle, []*pkcs11.Mechanism, []*pkcs11.Attribute, []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
	return 0, 0, pkcs11.Error(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}
func (f *fakeModule) SignInit(sh pkcs11.SessionHandle, _ []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(sh); err != nil {
		return err
	}
	if !f.loggedIn {
		return pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN)
	}
	if o != f.privH() {
		return pkcs11.Error(pkcs11.CKR_KEY_HANDLE_INVALID)
	}
	return nil
}
func (f *fakeModule) Sign(sh pkcs11.SessionHandle, digest []byte) ([]byte, error) {
	f.mu.Lock()
	if err := f.check(sh); err != nil {
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	r, s, err := ecdsa.Sign(rand.Reader, f.key, digest)
	if err != nil {
		return nil, err
	}
	f.signs.Add(1)
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

func fakeURI(module, pinFile string) string {
	return (&URI{Token: "Fake", Object: "k", ModulePath: module, PINSource: "file:" + pinFile}).String()
}

func writePIN(t *testing.T, pin string) string {
	p := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(p, []byte(pin), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFakeWrongPINNotRetried(t *testing.T) {
	f, module := newFake(t)
	o := newTestOpener(t, "", 2)
	ctx := context.Background()
	pinFile := writePIN(t, "0000")
	for i := 0; i < 3; i++ {
		_, err := o.OpenSigner(ctx, fakeURI(module, pinFile))
		if !errors.Is(err, keys.ErrPINIncorrect) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if f.loginCalls != 1 {
		t.Fatalf("C_Login called %d times with the same wrong PIN, want 1", f.loginCalls)
	}
	os.WriteFile(pinFile, []byte("1234"), 0o600)
	s, err := o.OpenSigner(ctx, fakeURI(module, pinFile))
	if err != nil {
		t.Fatal(err)
	}
	signAndVerify(t, ctx, s, crypto.SHA256)
	if f.loginCalls != 2 {
		t.Fatalf("C_Login called %d times, want 2", f.loginCalls)
	}
}

func TestFakePINLocked(t *testing.T) {
	f, module := newFake(t)
	f.loginRV = pkcs11.CKR_PIN_LOCKED
	o := newTestOpener(t, "", 2)
	_, err := o.OpenSigner(context.Background(), fakeURI(module, writePIN(t, "1234")))
	var le *LoginError
	if !errors.As(err, &le) || !errors.Is(err, keys.ErrPINBlocked) {
		t.Fatalf("got %v, want *LoginError matching keys.ErrPINBlocked", err)
	}
}

// TestFakeTokenRemoved removes the token and puts it back in another slot: signing recovers without a
// new Opener, and while the token is away the error says so.
func TestFakeTokenRemoved(t *testing.T) {
	f, module := newFake(t)
	o := newTestOpener(t, "", 2)
	ctx := context.Background()
	s, err := o.OpenSigner(ctx, fakeURI(module, writePIN(t, "1234")))
	if err != nil {
		t.Fatal(err)
	}
	signAndVerify(t, ctx, s, crypto.SHA256)

	f.remove()
	f.insert(9)
	signAndVerify(t, ctx, s, crypto.SHA256)

	f.remove()
	d := sha256.Sum256([]byte("x"))
	_, err = s.(*Key).SignContext(ctx, d[:], crypto.SHA256)
	if !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("token away: got %v, want ErrTokenNotFound", err)
	}
	f.insert(11)
	signAndVerify(t, ctx, s, crypto.SHA256)
}

// TestFakeConcurrentInvalidation signs from many goroutines while sessions, login and object
// handles are invalidated again and again (C_CloseAllSessions by someone else); no request may be
// lost. Run with -race.
func TestFakeConcurrentInvalidation(t *testing.T) {
	f, module := newFake(t)
	o := newTestOpener(t, "", 3)
	ctx := context.Background()
	s, err := o.OpenSigner(ctx, fakeURI(module, writePIN(t, "1234")))
	if err != nil {
		t.Fatal(err)
	}
	k := s.(*Key)
	stop := make(chan struct{})
	chaos := make(chan int)
	go func() {
		n := 0
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				chaos <- n
				return
			case <-tick.C:
				f.closeAll()
				n++
			}
		}
	}()
	const workers, each = 8, 300
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				d := sha256.Sum256([]byte{byte(w), byte(i)})
				if _, err := k.SignContext(ctx, d[:], crypto.SHA256); err != nil {
					failed.Add(1)
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	n := <-chaos
	if failed.Load() != 0 {
		t.Fatalf("%d requests lost", failed.Load())
	}
	if got := f.signs.Load(); got != workers*each {
		t.Fatalf("token made %d signatures, want %d", got, workers*each)
	}
	t.Logf("%d signatures across %d invalidations", workers*each, n)
}
